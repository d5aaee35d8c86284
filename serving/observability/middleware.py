"""HTTP request metrics as a small pure-ASGI middleware (not Litestar's PrometheusMiddleware).

Why not ``litestar.plugins.prometheus``: it keeps its metrics in a class-level dict on the GLOBAL
registry (a second app in the same process, e.g. every test, reuses or collides with the first
app's metrics), labels by raw path unless ``group_path`` is set, and builds a ``Request`` object
and label dicts per request. This middleware runs after routing (Litestar app-level middleware
wraps each route handler), so ``scope["path_template"]`` gives a bounded route label, and it does
three metric updates per request on a registry the app owns.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from prometheus_client import Counter, Histogram

    from serving.observability.metrics import ServingMetrics


class HttpMetricsMiddleware:
    """Counts requests by (route template, method, status) and times them; skips ``skip_paths``."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, skip_paths: frozenset[str]) -> None:
        self.app = app
        self._metrics = metrics
        self._skip = skip_paths
        # Labelled children by label values: ``.labels()`` locks and hashes on every call; the
        # label sets are bounded (route templates x methods x statuses), so caching is safe.
        self._latency: dict[str, Histogram] = {}
        self._counts: dict[tuple[str, str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] in self._skip:
            await self.app(scope, receive, send)
            return
        metrics = self._metrics
        status = 500  # if the app raises before sending, that is what the client sees

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            metrics.in_flight.dec()
            route = scope.get("path_template") or "unmatched"
            latency = self._latency.get(route)
            if latency is None:
                latency = self._latency[route] = metrics.request_latency.labels(route)
            latency.observe(time.perf_counter() - started)
            key = (route, scope.get("method", ""), status)
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = metrics.requests.labels(key[0], key[1], str(status))
            count.inc()
