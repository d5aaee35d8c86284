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
from litestar.openapi import OpenAPIConfig
from litestar.plugins import PluginProtocol
from litestar.types import Message, Scope

from serving.api.errors import exception_handlers
from serving.api.page import build_page_handlers
from serving.api.request_id import add_request_id
from serving.api.response_hooks import ResponseHooks
from serving.api.routes import build_route_handlers
from serving.batching import BatchObserver
from serving.lifecycle import ModelLoader, Service, settle_heap, shorten_gil_switch_interval
from serving.model import load_model, locate_metadata
from serving.observability import ObservabilityPlugin
from serving.settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    observer: BatchObserver | None = None,
    plugins: Sequence[PluginProtocol] = (),
    model_loader: ModelLoader = load_model,
) -> Litestar:
    """Build the service app.

    Observability (traces, ``/metrics``, drift) is wired in from the settings unless the caller
    passes its own ``observer`` (the batcher's hooks). ``plugins`` adds Litestar plugins;
    ``model_loader`` is the seam tests use to wrap the real model (e.g. to hold a batch while
    they fill the queue). The process's :class:`~serving.lifecycle.Service` is
    ``app.state.service``.
    """
    settings = settings if settings is not None else Settings()
    plugins = list(plugins)
    telemetry: ObservabilityPlugin | None = None
    if observer is None and (settings.metrics_enabled or settings.tracing_enabled):
        telemetry = ObservabilityPlugin(settings, locate_metadata(settings))
        observer = telemetry.observer
        plugins.append(telemetry)
    service = Service(settings, observer=observer, model_loader=model_loader)
    if telemetry is not None:
        telemetry.observer.watch_queue(service.queued_rows)

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
        route_handlers=[*build_route_handlers(service), *build_page_handlers()],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        before_send=[ResponseHooks(finish_headers)],  # the plugin adds its observer to it
        plugins=plugins,
        state=State({"service": service}),
        openapi_config=OpenAPIConfig(
            title="MNIST inference service",
            version="1.0.0",
            description="Adaptive micro-batching onnxruntime service for a Keras MNIST model.",
            path="/schema",
        ),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        logging_config=None,
    )
