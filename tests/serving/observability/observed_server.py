"""Run the REAL service app with observability wired in, as a server process for e2e tests.

``python tests/serving/observability/observed_server.py`` reads SERVING_* / OTEL_* from the
environment. The wiring in :func:`observed_app` is what ``create_app`` should do once the lead
integrates the plugin (then the e2e tests can start ``python -m serving`` instead).
"""

from __future__ import annotations

from litestar import Litestar

from model_repository import load_metadata, resolve
from serving.app import create_app
from serving.observability import ObservabilityPlugin
from serving.server import DrainingServer, uvicorn_config
from serving.settings import Settings


def observed_app(settings: Settings) -> Litestar:
    version_dir = resolve(settings.model_repository, settings.model_name, settings.model_version)
    plugin = ObservabilityPlugin(settings, load_metadata(version_dir.metadata_file))
    app = create_app(settings, observer=plugin.observer, plugins=[plugin])
    service = app.state.service
    plugin.observer.watch_queue(lambda: service.batcher.queued_rows if service.batcher else 0)
    return app


if __name__ == "__main__":
    settings = Settings()
    DrainingServer(uvicorn_config(settings), settings, app_factory=observed_app).run()
