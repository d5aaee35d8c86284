"""The app factory: ``create_app(settings)`` wires the parts; nothing is built at import time.

This is where every part meets, once:

* ``Observability`` is built first and each part gets its observer here (the one attach point):
  the service (batches, model versions), the pipeline (prediction requests), the Litestar routes
  (a wrapper and a ``before_send`` callback), the feedback loop (a listener);
* the rollout (serving/rollout_service.py) gets the batch observer it wraps while it records,
  observability's rollout events, and the feedback labels; the service asks it what to serve;
* the :class:`~serving.pipeline.Pipeline` serves predictions; Litestar serves every other route;
* :class:`ServiceApp` is the ASGI app the server runs: it hands predictions to the pipeline and
  everything else (and the lifespan) to Litestar.

The lifespan owns every resource: it loads and warms the model and starts the batcher before the
server accepts traffic, and on shutdown drains and stops the batcher (freeing its thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.plugins import PluginProtocol
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from serving.access.setup import Access, build_access
from serving.api.errors import exception_handlers
from serving.api.feedback import build_quality_handlers
from serving.api.openapi import assets_router, document_access, openapi_config
from serving.api.page import build_page_handlers
from serving.api.request_id import add_request_id
from serving.api.response_hooks import ResponseHooks
from serving.api.rollout import build_rollout_handlers
from serving.api.routes import build_route_handlers
from serving.api.v2.routes import build_v2_handlers
from serving.feedback.loop import Feedback, build_feedback
from serving.lifecycle import ModelLoader, Service, settle_heap, shorten_gil_switch_interval
from serving.model import load_model, locate_metadata
from serving.observability import Observability, ObservabilityPlugin
from serving.pipeline import ARRIVAL, RESPONDER, Pipeline, Refusal, Ticket, arrival_of
from serving.pipeline.admission import HEADROOM
from serving.pipeline.head import read_head
from serving.pipeline.stages import send_answer
from serving.rollout_service import RolloutService
from serving.settings import Settings
from serving.transport.arrival import arrived_at
from serving.transport.backpressure import Backpressure
from serving.transport.loop_lag import LoopLag

logger = logging.getLogger(__name__)


class ServiceApp:
    """The ASGI app: predictions through the pipeline, every other request through Litestar.

    A request normally arrives decided: the HTTP protocol ran the pipeline's ``arrive`` (access,
    and a prediction's admission) when its headers were complete and left the outcome in the
    scope. Without that protocol (a test client, another ASGI server) the app asks the pipeline
    itself, so both paths are one.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        feedback: Feedback,
        litestar: Litestar,
        routes: ASGIApp,
        backpressure: Backpressure | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.service = pipeline.service
        self.feedback = feedback
        self.litestar = litestar
        #: The transport's backpressure (serving/transport/backpressure.py): the HTTP protocol
        #: holds connections while ``pipeline.full``; None when switched off.
        self.backpressure = backpressure
        #: ``litestar`` as the server calls it: observed (HTTP metrics, server spans).
        self.routes = routes

    # ``scope`` is Any: used as the plain dict it is (typing.cast is a call per request).
    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            outcome = arrival_of(scope)
            if outcome is None:
                outcome = self.pipeline.arrive(
                    scope["method"],
                    scope["path"],
                    read_head(scope["headers"]),
                    arrived_at(scope, time.monotonic()),
                )
                scope.setdefault("extensions", {})[ARRIVAL] = outcome  # the key, for observers
            if isinstance(outcome, Ticket):
                # The protocol's one-write responder when it admitted the request (else send).
                responder = scope["extensions"].get(RESPONDER, send)
                await self.pipeline.serve(outcome, receive, responder)
                return
            if isinstance(outcome, Refusal):
                await send_answer(send, outcome.answer, outcome.request_id, outcome.close)
                return
        await self.routes(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    observability: Observability | None = None,
    plugins: Sequence[PluginProtocol] = (),
    model_loader: ModelLoader = load_model,
) -> ServiceApp:
    """Build the service's ASGI app.

    ``observability`` defaults to one built from the settings (tests pass one with their own
    registry and span processor); ``plugins`` adds Litestar plugins (e.g. test routes);
    ``model_loader`` is the seam tests use to wrap the real model. ``app.service`` is the
    process's :class:`~serving.lifecycle.Service`, ``app.pipeline`` its pipeline,
    ``app.feedback`` its feedback loop.
    """
    settings = settings if settings is not None else Settings()
    metadata = locate_metadata(settings)
    if observability is None:
        observability = Observability(settings, metadata)
    rollout = RolloutService(
        settings, observability.batches, observability.rollout, classes=len(metadata.labels)
    )
    service = Service(
        settings,
        model_loader=model_loader,
        observer=observability.batches,
        events=observability.models,
        rollout=rollout,
    )
    feedback = build_feedback(settings)
    feedback.listeners.append(observability.on_feedback)
    feedback.listeners.append(rollout.on_feedback)
    loop_lag = LoopLag()
    # KeysFileError here: a keys file that cannot be used stops the worker before it serves.
    access = build_access(settings, on_refused=observability.on_keys_refused)
    pipeline = Pipeline(service, feedback.issue_ids, observability.requests, loop_lag, access.guard)
    # A request held longer than this cannot meet the default deadline (admission's headroom).
    max_wait_s = settings.request_timeout_ms / 1000.0 * HEADROOM
    backpressure = Backpressure(pipeline.full, max_wait_s) if settings.backpressure else None
    shape = metadata.inputs[0].shape if metadata.inputs else []
    features = shape[-1] if shape and isinstance(shape[-1], int) else 0  # 0: load refuses it
    held = (lambda: backpressure.held) if backpressure is not None else (lambda: 0)
    litestar = _litestar(
        settings, pipeline, access, feedback, observability, plugins, features, rollout
    )
    observability.bind_held(held)
    return ServiceApp(pipeline, feedback, litestar, observability.wrap(litestar), backpressure)


def _litestar(
    settings: Settings,
    pipeline: Pipeline,
    access: Access,
    feedback: Feedback,
    observability: Observability,
    plugins: Sequence[PluginProtocol],
    features: int,
    rollout: RolloutService,
) -> Litestar:
    """The Litestar app of every route but the predictions' (whose OpenAPI operations it still
    documents), with the service's lifespan."""
    service, loop_lag = pipeline.service, pipeline.lag
    assert isinstance(loop_lag, LoopLag)

    def finish_headers(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            add_request_id(message, scope)
            if service.closing:  # while draining, keep-alive clients must not reuse it
                message["headers"] = [*message["headers"], (b"connection", b"close")]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await service.start()
        loop_lag.start()
        keys = asyncio.get_running_loop().create_task(access.watch(), name="keys-reload")
        logger.debug("froze %d start-up objects", settle_heap(settings.gc_young_threshold))
        shorten_gil_switch_interval(settings.gil_switch_interval_ms)
        try:
            yield
        finally:
            await service.drain(settings.drain_timeout_s)
            keys.cancel()
            await service.stop()
            loop_lag.stop()

    app = Litestar(
        route_handlers=[
            *build_route_handlers(service, features),
            *build_v2_handlers(service, ["binary_tensor_data", "model_repository"]),
            *build_quality_handlers(service, feedback),
            *build_rollout_handlers(service, rollout),
            *build_page_handlers(),
            assets_router(),
        ],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        # One before_send hook for all callbacks: each hook is a coroutine per message.
        before_send=[ResponseHooks(finish_headers, observability.on_response)],
        plugins=[ObservabilityPlugin(observability, service, loop_lag, feedback), *plugins],
        openapi_config=openapi_config("1.0.0"),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        logging_config=None,
    )
    document_access(app.openapi_schema)  # the generated document, cached for /schema
    return app
