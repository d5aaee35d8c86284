"""Where every HTTP request is observed: ONE pure-ASGI wrapper around the app's whole handler.

``ObservedRequests`` does, per request, what the settings switch on: the HTTP metrics (count by
route template, method and status; latency; in-flight) and the server span of a sampled request
(:mod:`.server_spans`). It is installed around ``app.asgi_handler`` at startup (see
:meth:`ObservedRequests.install`), so it runs before routing; the router writes
``scope["path_template"]`` into the same scope, so after the call the bounded route label is
known. Requests that match no route are counted as ``unmatched``.

Why so little in it: this wrapper is where most of the tracing + metrics cost is. With the
service and a copy of it loaded together on one core, taking out the per-request wrappers (and,
with them, every traced request) brought the cost of both from 11.6 % to 2.8 % CPU per request,
several times what the same code costs warm in a loop (~2 µs; README, "Latest results"). Per
request this one takes two clock readings, appends one tuple to a list and scans the headers
for ``traceparent``; :meth:`HttpMetrics.publish` turns the tuples into Prometheus updates on
every scrape and every ``metrics_sample_interval_s`` (prometheus_client takes a lock and walks
the buckets in Python per ``observe``). In-flight requests are a plain integer copied to the
gauge at the same moments: a gauge is read at scrape time anyway.

Why not ``litestar.plugins.prometheus``: it keeps its metrics in a class-level dict on the GLOBAL
registry (a second app in the same process, e.g. every test, reuses or collides with the first
app's metrics), labels by raw path unless ``group_path`` is set, and builds a ``Request`` object
and label dicts per request. Why not Litestar middleware: Litestar wraps every route that has
middleware in one more exception-handling layer with its own ``send`` wrapper.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, cast

import numpy as np
from litestar.enums import ScopeType

from serving.observability.metrics import MAX_BUFFERED, observe_many

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

    from serving.observability.metrics import ServingMetrics
    from serving.observability.server_spans import ServerSpans

HTTP = ScopeType.HTTP  # a module constant: an Enum attribute lookup per request is not free
UNMATCHED = "unmatched"
#: Method label values; anything else a client sends is counted as "other" (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: One (route template or None, method, status, seconds) per answered request.
Observation = tuple[str | None, str, int, float]


class HttpMetrics:
    """The HTTP request metrics: observations recorded per request, written by :meth:`publish`.

    Only the event loop thread may touch it. Past ``MAX_BUFFERED`` observations (a long sample
    interval under heavy load) :meth:`ObservedRequests.__call__` publishes at once.
    """

    def __init__(self, metrics: ServingMetrics, skip_paths: frozenset[str]) -> None:
        self._metrics = metrics
        self.skip_paths = skip_paths
        self.in_flight = 0
        self.observations: list[Observation] = []

    def publish(self) -> None:
        """Write the buffered observations and the in-flight count to Prometheus."""
        observations, self.observations = self.observations, []
        latencies: defaultdict[str, list[float]] = defaultdict(list)
        counts: Counter[tuple[str, str, int]] = Counter()
        for route, method, status, seconds in observations:
            route = route or UNMATCHED
            latencies[route].append(seconds)
            counts[route, method if method in METHODS else "other", status] += 1
        for route, values in latencies.items():
            child = self._metrics.request_latency.labels(route)
            observe_many(child, np.asarray(values, dtype=np.float64))
        for (route, method, status), count in counts.items():
            self._metrics.requests.labels(route, method, str(status)).inc(count)
        self._metrics.in_flight.set(self.in_flight)


class ResponseStatus:
    """``send``, wrapped to remember the response's status (500 until a response starts: if the
    app raises before sending, that is what the client sees). Used by the wrapper below and by
    the server span (:meth:`ServerSpans.trace`), so a traced request is wrapped once."""

    __slots__ = ("_send", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)


class ObservedRequests:
    """The ASGI wrapper: ``http`` and ``spans`` are each optional (switched off by settings)."""

    def __init__(self, app: ASGIApp, http: HttpMetrics | None, spans: ServerSpans | None) -> None:
        self.app = app
        self.http = http
        self.spans = spans

    @classmethod
    def install(
        cls, app: Litestar, http: HttpMetrics | None, spans: ServerSpans | None
    ) -> ObservedRequests:
        """Wrap ``app``'s ASGI handler (at startup: Litestar builds it after ``on_app_init``)."""
        wrapper = cls(app.asgi_handler, http, spans)
        app.asgi_handler = wrapper
        return wrapper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != HTTP:
            await self.app(scope, receive, send)
            return
        scope = cast("HTTPScope", scope)  # narrowed: HTTP is a constant, not the enum literal
        spans = self.spans
        if spans is not None and not spans.sampled(scope):
            spans = None  # ~99 % of requests at the default ratio
        http = self.http
        if http is None or scope["path"] in http.skip_paths:
            if spans is not None:
                await spans.trace(self.app, scope, receive, ResponseStatus(send))
            else:
                await self.app(scope, receive, send)
            return
        response = ResponseStatus(send)
        started = time.perf_counter()
        http.in_flight += 1
        try:
            if spans is not None:
                await spans.trace(self.app, scope, receive, response)
            else:
                await self.app(scope, receive, response)
        finally:
            http.in_flight -= 1
            observations = http.observations
            observations.append(
                (
                    scope.get("path_template"),
                    scope["method"],
                    response.status,
                    time.perf_counter() - started,
                )
            )
            if len(observations) >= MAX_BUFFERED:
                http.publish()
