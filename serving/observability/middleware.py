"""Where every HTTP request is observed: ONE wrapper around the app's whole handler.

``ObservedRequests`` does, per request, what the settings switch on: the HTTP metrics (count by
route template, method and status; latency; in-flight) and the server span of a sampled request
(:mod:`.server_spans`). It is installed around ``app.asgi_handler`` at startup (see
:meth:`ObservedRequests.install`), so it sees the request before routing; its
:meth:`~ObservedRequests.on_message`, run by the app's ``before_send`` hook, sees the response's
messages, by which time the router has written ``scope["path_template"]``, the bounded route label.
Requests that match no route are counted as ``unmatched``.

Why so little in it: this wrapper is where most of the metrics cost was. With the service and a
copy of it loaded together on one core, removing the wrapper saved ~3.6 % of throughput, and the
bare ``await self.app(...)`` layer it used to add, with nothing else, cost ~2.4 %: several times
what the same code costs warm in a loop (README, "Latest results"). So the request's side is a
plain function that hands back the app's own coroutine (no coroutine layer, no ``send`` wrapper);
the response's side is a plain function run by the app's one ``before_send`` hook, which Litestar
runs for every message anyway. Per request that is two clock readings, two scope entries, one float
appended to the list of its labels and a scan of the headers for ``traceparent``;
:meth:`HttpMetrics.publish` turns the lists into Prometheus updates on every scrape and every
``metrics_sample_interval_s`` (prometheus_client takes a lock and walks the buckets in Python per
``observe``, so it gets whole arrays). In-flight requests are a plain integer copied to the gauge
at the same moments: a gauge is read at scrape time anyway.

Why not ``litestar.plugins.prometheus``: it keeps its metrics in a class-level dict on the GLOBAL
registry (a second app in the same process, e.g. every test, reuses or collides with the first
app's metrics), labels by raw path unless ``group_path`` is set, and builds a ``Request`` object
and label dicts per request. Why not Litestar middleware: Litestar wraps every route that has
middleware in one more exception-handling layer with its own ``send`` wrapper.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
from litestar.enums import ScopeType

from serving.observability.metrics import MAX_BUFFERED, observe_many

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from litestar import Litestar
    from litestar.types import ASGIApp, Receive, Send

    from serving.observability.metrics import ServingMetrics
    from serving.observability.server_spans import ServerSpans

HTTP = ScopeType.HTTP  # a module constant: an Enum attribute lookup per request is not free
#: Scope keys: when the wrapper saw the request, and the status its response started with.
STARTED = "observability.started"
STATUS = "observability.status"
UNMATCHED = "unmatched"
#: Method label values; anything else a client sends is counted as "other" (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The labels of one answered request: route template (None: no route matched), method, status.
LabelKey = tuple[str | None, str, int]


class HttpMetrics:
    """The HTTP request metrics: latencies recorded per label key, written by :meth:`publish`.

    Per request, :meth:`record` appends the latency to the list of its (route, method, status):
    a handful of keys, so :meth:`publish` does a few NumPy and Prometheus calls per key and no
    Python loop per request (the loop it replaced cost ~0.8 µs per request in py-spy). Only the
    event loop thread may touch it. Past ``MAX_BUFFERED`` recorded requests (a long sample
    interval under heavy load) :meth:`record` publishes at once.
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
        for (route, method, status), latencies in recorded.items():
            route = route or UNMATCHED
            by_route[route] += latencies
            method = method if method in METHODS else "other"
            self._metrics.requests.labels(route, method, str(status)).inc(len(latencies))
        for route, values in by_route.items():
            child = self._metrics.request_latency.labels(route)
            observe_many(child, np.asarray(values, dtype=np.float64))
        self._metrics.in_flight.set(self.in_flight)


class ObservedRequests:
    """The ASGI wrapper: ``http`` and ``spans`` are each optional (switched off by settings).

    Two halves, because a coroutine layer around the app is what an observed request paid for
    most (README, "Latest results"): :meth:`__call__` is a plain function that stamps the
    scope and hands back the app's own coroutine (or, for a sampled request, the span's), and
    :meth:`on_message`, run by the app's ``before_send`` hook, sees the response's start (its status
    goes into the scope, where the server span reads it too) and its last body message (the
    observation). Litestar turns every exception raised by a handler into a response, so every
    request the wrapper counts in flight ends with a last body message; only a failure inside
    ``send`` itself could leave one counted.
    """

    def __init__(self, http: HttpMetrics | None, spans: ServerSpans | None) -> None:
        self.app: ASGIApp  # the wrapped handler, set by install()
        self.http = http
        self.spans = spans

    def install(self, app: Litestar) -> None:
        """Wrap ``app``'s ASGI handler (at startup: Litestar builds it after ``on_app_init``)."""
        self.app = app.asgi_handler
        app.asgi_handler = self  # same call signature; returns the awaitable it is handed

    # ``scope`` is typed Any below: both methods use it as the plain dict it is (two keys of our
    # own), and ``typing.cast`` is a function call per use on the hot path.
    def __call__(self, scope: Any, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != HTTP:
            return self.app(scope, receive, send)
        http = self.http
        if http is not None and scope["path"] not in http.skip_paths:
            http.in_flight += 1
            scope[STARTED] = time.perf_counter()
        spans = self.spans
        if spans is not None and spans.sampled(scope):  # false for ~99 % at the default ratio
            return spans.trace(self.app, scope, receive, send)
        return self.app(scope, receive, send)

    def on_message(self, message: Any, scope: Any) -> None:
        """The response's status (into the scope) and, on its last message, the observation.

        Run by the app's one ``before_send`` hook
        (:class:`serving.api.response_hooks.ResponseHooks`).
        """
        kind = message["type"]
        if kind == "http.response.start":
            scope[STATUS] = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            started = scope.pop(STARTED, None)
            http = self.http
            if started is not None and http is not None:
                http.in_flight -= 1
                key = (scope.get("path_template"), scope["method"], scope.get(STATUS, 500))
                http.record(key, time.perf_counter() - started)
