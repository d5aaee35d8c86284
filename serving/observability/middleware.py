"""HTTP request metrics: a pure-ASGI wrapper around the app's whole handler (outermost).

Why not ``litestar.plugins.prometheus``: it keeps its metrics in a class-level dict on the GLOBAL
registry (a second app in the same process, e.g. every test, reuses or collides with the first
app's metrics), labels by raw path unless ``group_path`` is set, and builds a ``Request`` object
and label dicts per request.

Why outermost and not app-level Litestar middleware: Litestar wraps every route that has
middleware in an extra exception-handling layer with its own ``send`` wrapper. In cProfile of
``python -m benchmarks.inprocess``, that layer took about as long as all the metric updates.
Installed around ``app.asgi_handler`` (see :meth:`HttpMetrics.install`), the wrapper runs before
routing; the router writes ``scope["path_template"]`` into the same scope, so after the call the
bounded route label is known. Requests that match no route are counted as ``unmatched``.

Per request the wrapper only appends the latency to a list and adds one to a plain counter;
:meth:`HttpMetrics.publish` writes them to Prometheus on every scrape and every
``metrics_sample_interval_s`` (prometheus_client takes a lock and walks the buckets in Python per
``observe``). In-flight requests are a plain integer copied to the gauge at the same moments: a
gauge is read at scrape time anyway.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from serving.observability.metrics import BufferedHistogram

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from serving.observability.metrics import ServingMetrics

UNMATCHED = "unmatched"
#: Method label values; anything else a client sends is counted as "other" (bounded labels).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """Counts requests by (route template, method, status) and times them; skips ``skip_paths``."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, skip_paths: frozenset[str]) -> None:
        self.app = app
        self._metrics = metrics
        self._skip = skip_paths
        self.in_flight = 0
        # By label values, which are bounded (route templates x methods x statuses).
        self._latency: dict[str, BufferedHistogram] = {}
        self._counts: dict[tuple[str, str, int], int] = {}

    @classmethod
    def install(
        cls, app: Litestar, metrics: ServingMetrics, skip_paths: frozenset[str]
    ) -> HttpMetrics:
        """Wrap ``app``'s ASGI handler (at startup: Litestar builds it after ``on_app_init``)."""
        wrapper = cls(app.asgi_handler, metrics, skip_paths)
        app.asgi_handler = wrapper
        return wrapper

    def publish(self) -> None:
        """Write the buffered counts and latencies and the in-flight count to Prometheus.

        Called on the event loop (the plugin's sampler and each scrape), like the hot path.
        """
        for latency in self._latency.values():
            latency.flush()
        counts, self._counts = self._counts, {}
        for (route, method, status), count in counts.items():
            method = method if method in METHODS else "other"
            self._metrics.requests.labels(route, method, str(status)).inc(count)
        self._metrics.in_flight.set(self.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in self._skip:
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before sending, that is what the client sees

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.in_flight -= 1
            route = scope.get("path_template") or UNMATCHED
            latency = self._latency.get(route)
            if latency is None:
                child = self._metrics.request_latency.labels(route)
                latency = self._latency[route] = BufferedHistogram(child)
            latency.add(time.perf_counter() - started)
            key = (route, scope["method"], status)
            self._counts[key] = self._counts.get(key, 0) + 1
