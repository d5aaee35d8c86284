"""The HTTP server span of each sampled request (called by the one ASGI wrapper, middleware.py).

The sampling decision comes first, from the raw ``traceparent`` header (:func:`head_sampled`):
an unsampled request costs one header scan and one ``random()`` call, and no OpenTelemetry
object is touched. A sampled request gets one SERVER span whose parent is the caller's context
(the global propagator, W3C trace context by default, so ``OTEL_PROPAGATORS`` is honoured) and
whose attributes follow the stable HTTP semantic conventions: ``http.request.method``,
``url.scheme``, ``url.path``, ``http.route``, ``http.response.status_code`` and, for 5xx,
``error.type``. The span is named ``{method} {route template}`` once routing has run.

Why not Litestar's OpenTelemetry plugin (``opentelemetry-instrumentation-asgi``): per traced
request it builds ~13 attribute values in the old conventions (and sets them a second time), runs
URL and header redaction, records no-op metrics and wraps ``receive`` and ``send``; and it names
spans by the raw path (``GET /items/3``), an unbounded set of span names. A traced request
costs far more at 1 % than when every request is traced (~1 ms vs ~0.4 ms of CPU each; not
because its path runs rarely: building the spans in bulk did not make them cheaper; sending them
is most of it, README "Latest results"), so its path should be short:
with both servers on one core under the same load, tracing at 1 % vs 0 % cost 5.6-8.1 % CPU
per request with the plugin and 4.6-5.6 % with this wrapper (README, "Tracing").
"""

from __future__ import annotations

from random import random as _random
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import propagate
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from serving.observability.middleware import STATUS
from serving.observability.tracing import request_traced

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

#: Path prefixes that never produce spans: probes, scrapes and the OpenAPI pages are noise.
UNTRACED_PREFIXES = ("/healthz", "/readyz", "/metrics", "/schema")


def head_sampled(scope: Scope, ratio: float) -> bool:
    """The parent-based ratio decision, made from the raw headers before any OTel work.

    A valid W3C ``traceparent`` decides by its sampled flag (the caller's decision wins); without
    one (or with a malformed one, which the propagator ignores too) the request is a trace root
    and is sampled with probability ``ratio``.
    """
    for name, value in scope["headers"]:
        if name == b"traceparent":
            if len(value) == 55 and value[:3] == b"00-" and value[35:36] == b"-":
                return value[-1] in b"13579bdf"  # the sampled bit of the flags byte
            break
    return _random() < ratio


class ServerSpans:
    """Decides which requests are traced and makes their SERVER span; used by the one ASGI
    wrapper (:class:`serving.observability.middleware.ObservedRequests`).

    The provider behind ``tracer`` must sample every root it is handed (ratio 1, parent-based):
    the ratio is applied here, before a span exists.
    """

    def __init__(self, tracer: Tracer, sample_ratio: float) -> None:
        self._tracer = tracer
        self._ratio = sample_ratio

    def sampled(self, scope: HTTPScope) -> bool:
        """Head sampling first (cheap, and false for ~99 % of requests), then the path."""
        return head_sampled(scope, self._ratio) and not scope["path"].startswith(UNTRACED_PREFIXES)

    async def trace(self, app: ASGIApp, scope: HTTPScope, receive: Receive, send: Send) -> None:
        """Run ``app`` for this request inside its SERVER span.

        The status is the one ``ObservedRequests.on_message`` wrote into the scope; 500 if the
        app raised before a response started (what the client then gets from the server).
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
            try:
                await app(scope, receive, send)
            finally:
                route = scope.get("path_template")
                if route:  # unset when no route matched (404/405): the name stays the method
                    span.update_name(f"{method} {route}")
                    span.set_attribute(HTTP_ROUTE, route)
                status: int = cast("dict[str, Any]", scope).get(STATUS, 500)
                span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
                if status >= 500:
                    span.set_attribute(ERROR_TYPE, str(status))
                    span.set_status(Status(StatusCode.ERROR))
