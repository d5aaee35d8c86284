"""The app factory: ``create_app(settings)`` wires the parts; nothing is built at import time.

The lifespan owns every resource: it loads and warms the model and starts the batcher before the
server accepts traffic, and on shutdown drains and stops the batcher (freeing its thread).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.plugins import PluginProtocol
from litestar.types import Message, Scope

from serving.api.errors import exception_handlers
from serving.api.openapi import assets_router, openapi_config
from serving.api.page import build_page_handlers
from serving.api.request_id import add_request_id
from serving.api.response_hooks import ResponseHooks
from serving.api.routes import build_route_handlers
from serving.api.v2.routes import build_v2_handlers
from serving.feedback.loop import build_feedback
from serving.feedback.routes import build_quality_handlers
from serving.lifecycle import ModelLoader, Service, settle_heap, shorten_gil_switch_interval
from serving.model import load_model, locate_metadata
from serving.observability import ObservabilityPlugin
from serving.observability.otel_env import resolve_tracing
from serving.settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    plugins: Sequence[PluginProtocol] = (),
    model_loader: ModelLoader = load_model,
) -> Litestar:
    """Build the service app.

    Observability (traces, ``/metrics``, drift) is an :class:`ObservabilityPlugin` built from
    the settings, unless ``plugins`` already holds one (tests pass one with their own registry
    and span processor). ``plugins`` adds Litestar plugins (e.g. test routes); ``model_loader``
    is the seam tests use to wrap the real model. The process's
    :class:`~serving.lifecycle.Service` is ``app.state.service``; its
    :class:`~serving.feedback.loop.Feedback` (prediction ids, labelled window) is
    ``app.state.feedback``.
    """
    settings = settings if settings is not None else Settings()
    plugins = list(plugins)
    observed = any(isinstance(plugin, ObservabilityPlugin) for plugin in plugins)
    if not observed and (settings.metrics_enabled or resolve_tracing(settings).enabled):
        plugins.append(ObservabilityPlugin(settings, locate_metadata(settings)))
    service = Service(settings, model_loader=model_loader)
    feedback = build_feedback(settings)

    def finish_headers(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            add_request_id(message, scope)
            if service.closing:  # while draining, keep-alive clients must not reuse it
                message["headers"] = [*message["headers"], (b"connection", b"close")]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await service.start()
        logger.debug("froze %d start-up objects", settle_heap(settings.gc_young_threshold))
        shorten_gil_switch_interval(settings.gil_switch_interval_ms)
        try:
            yield
        finally:
            await service.drain(settings.drain_timeout_s)
            await service.stop()

    return Litestar(
        route_handlers=[
            *build_route_handlers(service, feedback.issue_ids),
            *build_v2_handlers(
                service, ["binary_tensor_data", "model_repository"], feedback.ids_for
            ),
            *build_quality_handlers(service, feedback),
            *build_page_handlers(),
            assets_router(),
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        before_send=[ResponseHooks(finish_headers)],  # the plugin adds its callback to it
        plugins=plugins,
        state=State({"service": service, "feedback": feedback}),
        openapi_config=openapi_config("1.0.0"),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        logging_config=None,
    )
