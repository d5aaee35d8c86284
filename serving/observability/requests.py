"""Where every HTTP request is observed: the HTTP metrics and the server span of a sampled one.

Per request, what the settings switch on: the HTTP metrics (:class:`HttpMetrics`: count by route
template, method and status; latency; in-flight) and the SERVER span of a sampled request
(:class:`ServerSpans`). Two doors, the same metrics and spans:

* :class:`PipelineRequests`: the pipeline's ``RequestObserver`` for predictions (the pipeline
  knows its route template, status and timing; the span is current while it serves);
* :class:`ObservedRequests`: the wrapper around the Litestar routes; its
  :meth:`~ObservedRequests.on_message`, run by Litestar's ``before_send`` hook, sees the
  response, by which time the router has written ``scope["path_template"]``, the bounded label.

Why so thin: a coroutine layer or a ``send`` wrapper per request cost measurably more than the
metrics themselves (docs/decisions.md, "Observability on the hot path"). So the request side is a
plain function that hands back the app's own coroutine, the response side a plain function, and
the metrics are list appends written to Prometheus in bulk by :meth:`HttpMetrics.publish`.

Why not Litestar's prometheus or OpenTelemetry plugins: the first keeps its metrics on the global
registry and labels by raw path; the second names spans by raw path (unbounded) and does far
more work per traced request (docs/decisions.md).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from random import random as _random
from typing import TYPE_CHECKING, Any

import numpy as np
from litestar.enums import ScopeType
from opentelemetry import propagate
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from serving.observability.metrics import MAX_BUFFERED, observe_many
from serving.observability.tracing import TRACED_REQUEST, request_traced
from serving.pipeline.stages import ARRIVAL

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from litestar.types import ASGIApp, Receive, Scope, Send

    from serving.observability.inputs import InputMetrics
    from serving.observability.metrics import ServingMetrics
    from serving.pipeline.doors import Door
    from serving.pipeline.head import RequestHead

HTTP = ScopeType.HTTP  # a module constant: an Enum attribute lookup per request is not free
#: Scope keys: when the wrapper saw the request, and the status its response started with.
STARTED = "observability.started"
STATUS = "observability.status"
UNMATCHED = "unmatched"
#: Method label values; anything else a client sends is counted as "other" (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Path prefixes that never produce spans: probes, scrapes and the OpenAPI pages are noise.
UNTRACED_PREFIXES = ("/healthz", "/readyz", "/metrics", "/schema", "/v2/health")
#: The labels of one answered request: route template (None: no route matched), method, status,
#: API key name (bounded: the keys file's names, "anonymous", "invalid"), protocol (http, grpc).
LabelKey = tuple[str | None, str, int, str, str]
#: Span attribute of the API key's name (OpenTelemetry's client identity of the request).
ENDUSER_ID = "enduser.id"
#: RPC semantic conventions of a gRPC call's span.
RPC_SYSTEM, RPC_SERVICE, RPC_METHOD = "rpc.system", "rpc.service", "rpc.method"
ANONYMOUS = "anonymous"
access_logger = logging.getLogger("serving.access")


class AccessLog:
    """One line per answered request (the ``access_log`` setting): never the key, its name."""

    __slots__ = ()

    def line(
        self, method: str, route: str | None, status: int, seconds: float, rid: str, key: str
    ) -> None:
        access_logger.info(
            "%s %s %d %.2f ms id=%s key=%s",
            method,
            route or UNMATCHED,
            status,
            seconds * 1000.0,
            rid,
            key,
        )


def key_of(scope: Any) -> str:
    """The API key name the pipeline's ``arrive`` gave a Litestar request (in the scope)."""
    extensions = scope.get("extensions")
    decision = extensions.get(ARRIVAL) if extensions else None
    return getattr(decision, "key_name", ANONYMOUS)


class HttpMetrics:
    """The HTTP request metrics: latencies recorded per label key, written by :meth:`publish`.

    Only the event loop thread may touch it. Past ``MAX_BUFFERED`` recorded requests (a long
    sample interval under heavy load) :meth:`record` publishes at once.
    """

    def __init__(self, metrics: ServingMetrics, skip_paths: frozenset[str]) -> None:
        self._metrics = metrics
        self.skip_paths = skip_paths
        self.in_flight = 0
        self._latencies: dict[LabelKey, list[float]] = {}
        self._buffered = 0

    def record(self, key: LabelKey, seconds: float) -> None:
        latencies = self._latencies.get(key)
        if latencies is None:
            self._latencies[key] = [seconds]
        else:
            latencies.append(seconds)
        self._buffered += 1
        if self._buffered >= MAX_BUFFERED:
            self.publish()

    def publish(self) -> None:
        """Write the buffered latencies and counts, and the in-flight count, to Prometheus."""
        recorded, self._latencies, self._buffered = self._latencies, {}, 0
        by_route: defaultdict[str, list[float]] = defaultdict(list)
        for (route, method, status, key, protocol), latencies in recorded.items():
            route = route or UNMATCHED
            by_route[route] += latencies
            method = method if method in METHODS else "other"
            labels = (route, method, str(status), key, protocol)
            self._metrics.requests.labels(*labels).inc(len(latencies))
        for route, values in by_route.items():
            child = self._metrics.request_latency.labels(route)
            observe_many(child, np.asarray(values, dtype=np.float64))
        self._metrics.in_flight.set(self.in_flight)


def traceparent_sampled(traceparent: bytes | None, ratio: float) -> bool:
    """The parent-based ratio decision, made from the raw header before any OTel work.

    A valid W3C ``traceparent`` decides by its sampled flag (the caller's decision wins); without
    one (or with a malformed one, which the propagator ignores too) the request is a trace root
    and is sampled with probability ``ratio``.
    """
    if traceparent is not None and (
        len(traceparent) == 55 and traceparent[:3] == b"00-" and traceparent[35:36] == b"-"
    ):
        return traceparent[-1] in b"13579bdf"  # the sampled bit of the flags byte
    return _random() < ratio


def head_sampled(scope: Scope, ratio: float) -> bool:
    """:func:`traceparent_sampled` on an ASGI scope's headers."""
    traceparent = next((v for n, v in scope["headers"] if n == b"traceparent"), None)
    return traceparent_sampled(traceparent, ratio)


class ServerSpans:
    """Decides which requests are traced and makes their SERVER span.

    The provider behind ``tracer`` must sample every root it is handed: the ratio is applied
    here, before a span exists, so an unsampled request touches no OpenTelemetry object. Span
    attributes follow the stable HTTP semantic conventions; the span is named
    ``{method} {route template}`` once routing has run.
    """

    def __init__(self, tracer: Tracer, sample_ratio: float) -> None:
        self._tracer = tracer
        self._ratio = sample_ratio

    def request_span(self, door: Door, head: RequestHead, key: str) -> PredictionSpan | None:
        """The span of a prediction request, if it is sampled (None: not traced)."""
        if not traceparent_sampled(head.traceparent, self._ratio):
            return None
        return PredictionSpan(self._tracer, door, head, key)

    def sampled(self, scope: Any) -> bool:
        """Head sampling first (cheap, and false for most requests), then the path."""
        return head_sampled(scope, self._ratio) and not scope["path"].startswith(UNTRACED_PREFIXES)

    async def trace(self, app: ASGIApp, scope: Any, receive: Receive, send: Send) -> None:
        """Run ``app`` for this request inside its SERVER span.

        The status is the one :meth:`ObservedRequests.on_message` wrote into the scope; 500 if
        the app raised before a response started (what the client then gets from the server).
        """
        method = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with (
            self._tracer.start_as_current_span(
                method,
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={
                    HTTP_REQUEST_METHOD: method,
                    URL_SCHEME: scope["scheme"],
                    URL_PATH: scope["path"],
                },
            ) as span,
            request_traced(),
        ):
            span.set_attribute(ENDUSER_ID, key_of(scope))
            try:
                await app(scope, receive, send)
            finally:
                route = scope.get("path_template")
                if route:  # unset when no route matched (404/405): the name stays the method
                    span.update_name(f"{method} {route}")
                    span.set_attribute(HTTP_ROUTE, route)
                status: int = scope.get(STATUS, 500)
                span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
                if status >= 500:
                    span.set_attribute(ERROR_TYPE, str(status))
                    span.set_status(Status(StatusCode.ERROR))


class PredictionSpan:
    """The SERVER span of a sampled prediction, current while the pipeline serves it (so the
    queue-wait span is its child and the batch span links to it)."""

    __slots__ = ("_cm", "_door", "_head", "_key", "_span", "_token", "_tracer")

    def __init__(self, tracer: Tracer, door: Door, head: RequestHead, key: str) -> None:
        self._tracer = tracer
        self._door = door
        self._head = head
        self._key = key

    def __enter__(self) -> object:
        head = self._head
        carrier = {}
        if head.traceparent is not None:
            carrier["traceparent"] = head.traceparent.decode("latin-1")
        door = self._door
        if door.protocol == "grpc":  # the RPC semantic conventions: "service/method"
            service, _, method = door.template.strip("/").partition("/")
            name = f"{service}/{method}"
            attributes = {RPC_SYSTEM: "grpc", RPC_SERVICE: service, RPC_METHOD: method}
        else:
            name = f"POST {door.template}"
            attributes = {HTTP_REQUEST_METHOD: "POST", HTTP_ROUTE: door.template}
        self._cm = self._tracer.start_as_current_span(
            name,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={**attributes, ENDUSER_ID: self._key},
        )
        self._span = self._cm.__enter__()
        self._token = TRACED_REQUEST.set(True)
        return self._span

    def finish(self, status: int) -> None:
        self._span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
        if status >= 500:
            self._span.set_attribute(ERROR_TYPE, str(status))
            self._span.set_status(Status(StatusCode.ERROR))

    def __exit__(self, *exc: object) -> None:
        TRACED_REQUEST.reset(self._token)
        self._cm.__exit__(None, None, None)


class PipelineRequests:
    """The pipeline's ``RequestObserver``: ``http``, ``spans`` and ``inputs`` each optional."""

    def __init__(
        self,
        http: HttpMetrics | None,
        spans: ServerSpans | None,
        inputs: InputMetrics | None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.http = http
        self.spans = spans
        self.inputs = inputs
        self.access_log = access_log

    def span(self, door: Door, head: RequestHead, key: str) -> PredictionSpan | None:
        return self.spans.request_span(door, head, key) if self.spans is not None else None

    def on_start(self) -> None:
        if self.http is not None:
            self.http.in_flight += 1

    def on_end(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        if self.http is not None:
            self.http.in_flight -= 1
            self.http.record((template, "POST", status, key, protocol), seconds)
        if self.access_log is not None:
            self.access_log.line("POST", template, status, seconds, rid, key)

    def on_refused(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        if self.http is not None:
            self.http.record((template, "POST", status, key, protocol), seconds)
        if self.access_log is not None:
            self.access_log.line("POST", template, status, seconds, rid, key)

    def on_error(self, exc: BaseException) -> None:
        if self.inputs is not None and isinstance(exc, Exception):
            self.inputs.on_exception(exc, None)


class ObservedRequests:
    """The ASGI wrapper of the Litestar routes: ``http`` and ``spans`` are each optional.

    :meth:`__call__` stamps the scope and hands back the app's own coroutine (or, for a sampled
    request, the span's); :meth:`on_message` sees the response's start (its status goes into
    the scope, where the server span reads it too) and its last body message (the observation).
    Litestar turns every exception raised by a handler into a response, so every request
    counted in flight ends with a last body message.
    """

    def __init__(
        self,
        http: HttpMetrics | None,
        spans: ServerSpans | None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.app: ASGIApp  # the wrapped app, set by ``Observability.wrap``
        self.http = http
        self.spans = spans
        self.access_log = access_log
        #: Paths not timed (the scrape itself).
        self.skip_paths = http.skip_paths if http is not None else frozenset()
        self._timed = http is not None or access_log is not None

    # ``scope`` is typed Any: both methods use it as the plain dict it is (two keys of our own),
    # and ``typing.cast`` is a function call per use on the hot path.
    def __call__(self, scope: Any, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != HTTP:
            return self.app(scope, receive, send)
        if self._timed and scope["path"] not in self.skip_paths:
            if self.http is not None:
                self.http.in_flight += 1
            scope[STARTED] = time.perf_counter()
        spans = self.spans
        if spans is not None and spans.sampled(scope):
            return spans.trace(self.app, scope, receive, send)
        return self.app(scope, receive, send)

    def on_message(self, message: Any, scope: Any) -> None:
        """The response's status (into the scope) and, on its last message, the observation."""
        kind = message["type"]
        if kind == "http.response.start":
            scope[STATUS] = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            started = scope.pop(STARTED, None)
            if started is None:
                return
            seconds = time.perf_counter() - started
            route, method, status = (
                scope.get("path_template"),
                scope["method"],
                scope.get(STATUS, 500),
            )
            key = key_of(scope)
            if self.http is not None:
                self.http.in_flight -= 1
                self.http.record((route, method, status, key, "http"), seconds)
            if self.access_log is not None:
                rid = str(scope.get("request_id", ""))
                self.access_log.line(method, route, status, seconds, rid, key)
