"""The Litestar side of observability: ``GET /metrics``, counting refused inputs of the Litestar
routes, and the sampler's start and stop with the app's lifespan.

Everything it attaches is built by :class:`~serving.observability.telemetry.Observability`
and handed in with the service and feedback it reads: no lookups in the app's state.
"""

from __future__ import annotations

from litestar import Litestar, Response, get
from litestar.config.app import AppConfig
from litestar.handlers import HTTPRouteHandler
from litestar.plugins import InitPlugin

from serving.feedback.loop import Feedback
from serving.lifecycle import Service
from serving.observability.metrics import CONTENT_TYPE
from serving.observability.telemetry import METRICS_PATH, Observability
from serving.transport.loop_lag import LoopLag


class ObservabilityPlugin(InitPlugin):
    def __init__(
        self,
        observability: Observability,
        service: Service,
        loop_lag: LoopLag,
        feedback: Feedback,
    ) -> None:
        super().__init__()
        self.observability = observability
        observability.bind(service.queued_rows, loop_lag, feedback.store)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        observability = self.observability
        if observability.metrics is not None:
            app_config.route_handlers.append(self._metrics_route())
        if observability.inputs is not None:
            app_config.after_exception.append(observability.inputs.on_exception)
        app_config.on_startup.append(self._start)
        app_config.on_shutdown.append(self._stop)
        return app_config

    def _metrics_route(self) -> HTTPRouteHandler:
        @get(METRICS_PATH, include_in_schema=False)
        async def scrape() -> Response[bytes]:
            """Prometheus scrape of this worker (aggregated over workers when multiprocess)."""
            # The header given whole: for a text/* media type Litestar appends its own
            # "; charset=utf-8", and CONTENT_TYPE has one already. A repeated parameter is a
            # malformed media type to Go's parser, so Prometheus 3 refuses the scrape.
            return Response(
                await self.observability.scrape(),
                media_type=CONTENT_TYPE,
                headers={"content-type": CONTENT_TYPE},
            )

        return scrape

    async def _start(self, app: Litestar) -> None:
        await self.observability.start()

    async def _stop(self) -> None:
        await self.observability.stop()
