"""Extra routes for a test app built with ``create_app``: added through a plugin, so the test app
is the service's own app plus these, never a hand-wired copy."""

from __future__ import annotations

from litestar.config.app import AppConfig
from litestar.handlers import HTTPRouteHandler
from litestar.plugins import InitPlugin


class RoutesPlugin(InitPlugin):
    """Adds ``handlers`` to the app at ``on_app_init``."""

    def __init__(self, *handlers: HTTPRouteHandler) -> None:
        super().__init__()
        self.handlers = handlers

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(self.handlers)
        return app_config
