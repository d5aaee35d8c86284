"""OpenTelemetry: the TracerProvider, the Litestar server-span config, and the batch spans.

The provider is built per app and never installed globally (``trace.set_tracer_provider`` works
once per process, and tests build many apps): it is handed to Litestar's OpenTelemetryConfig and
used directly for the spans made here.

Span layout per request::

    POST /v1/predict            (server span, Litestar/ASGI instrumentation, honours traceparent)
      └─ queue wait             (enqueue -> batch start; attribute batch.id)
    inference batch             (child of the first sampled request, LINKED to every sampled one)

Only sampled requests get spans: an unsampled request costs one attribute check at enqueue.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig
from litestar.plugins.opentelemetry.middleware import OpenTelemetryInstrumentationMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, Tracer

OtlpProtocol = Literal["grpc", "http/protobuf"]

#: Paths that never produce spans: probes, scrapes and the OpenAPI pages are noise in traces.
UNTRACED_PATHS = ("^/healthz", "^/readyz", "^/metrics", "^/schema")
INSTRUMENTATION_NAME = "serving.batching"


def resolve_protocol(configured: OtlpProtocol | None) -> OtlpProtocol:
    """The setting wins; else the standard OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL; else
    http/protobuf, the OpenTelemetry specification's default (and all the slim image ships)."""
    if configured is not None:
        return configured
    env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    return "grpc" if env == "grpc" else "http/protobuf"


def otlp_exporter(protocol: OtlpProtocol) -> SpanExporter:
    """An OTLP span exporter; endpoint, headers, timeout come from the OTEL_EXPORTER_OTLP_* env."""
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcOTLPSpanExporter,
        )
    except ImportError as exc:  # the slim image ships OTLP/HTTP only (Dockerfile.serve OTLP_GRPC)
        raise RuntimeError(
            "OTLP/gRPC exporter not installed: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf "
            "(collector port 4318) or build the image with --build-arg OTLP_GRPC=true"
        ) from exc
    return GrpcOTLPSpanExporter()


def build_tracer_provider(
    *,
    service_name: str,
    service_version: str,
    sample_ratio: float,
    processor: SpanProcessor | None = None,
    protocol: OtlpProtocol | None = None,
) -> TracerProvider:
    """A provider with a parent-based ratio sampler.

    ``processor`` defaults to a BatchSpanProcessor over the OTLP exporter: spans are exported on
    a background thread, so a slow or dead collector never delays a response (the queue drops
    spans when full). Tests pass a SimpleSpanProcessor over an in-memory exporter.
    """
    resource = Resource.create({"service.name": service_name, "service.version": service_version})
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio))
    )
    provider.add_span_processor(
        processor or BatchSpanProcessor(otlp_exporter(resolve_protocol(protocol)))
    )
    return provider


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
    return random.random() < ratio


class SampledServerSpans(OpenTelemetryInstrumentationMiddleware):
    """Litestar's OpenTelemetry middleware, entered only by requests that will be sampled.

    The ASGI instrumentation does most of its work (collecting ~15 request attributes, URL
    redaction, environment lookups, wrapping ``send``) before and regardless of the sampler's
    verdict: at the default ratio of 0.1 it cost ~20% of the event loop for spans that are then
    dropped. Deciding first with :func:`head_sampled` and handing unsampled requests straight to
    the app keeps the same sampling semantics (parent-based ratio; the provider itself then
    samples every root it is handed) at a fraction of the cost. Being a subclass, Litestar still
    moves it outermost, so a sampled server span covers the whole request.
    """

    def __init__(self, app: ASGIApp, config: OpenTelemetryConfig, sample_ratio: float) -> None:
        super().__init__(app=app, config=config)
        self._next = app
        self._ratio = sample_ratio

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and head_sampled(scope, self._ratio):
            await self.open_telemetry_middleware(scope, receive, send)  # type: ignore[arg-type]
        else:
            await self._next(scope, receive, send)


def server_span_middleware(provider: TracerProvider, sample_ratio: float) -> DefineMiddleware:
    """The server-span middleware for an app whose provider samples every root it sees."""
    return DefineMiddleware(
        SampledServerSpans, config=server_span_config(provider), sample_ratio=sample_ratio
    )


def server_span_config(provider: TracerProvider) -> OpenTelemetryConfig:
    """Litestar's OTel middleware config: one server span per request, nothing more.

    ``exclude_spans`` drops the per-message "http send"/"http receive" internal spans the ASGI
    instrumentation makes by default (they tripled the span count per request). The meter
    provider is a no-op: metrics go to Prometheus, not through OTel.
    """
    return OpenTelemetryConfig(
        tracer_provider=provider,
        meter_provider=NoOpMeterProvider(),
        exclude=list(UNTRACED_PATHS),
        exclude_spans=["receive", "send"],
    )


@dataclass(slots=True)
class RequestTrace:
    """What a queued request carries for tracing (stored in ``QueuedRequest.trace_context``)."""

    server_context: SpanContext
    queue_span: Span


class BatchTracer:
    """Makes the queue-wait and inference-batch spans from the batcher's hooks."""

    def __init__(self, tracer: Tracer, model_name: str, model_version: str) -> None:
        self._tracer = tracer
        self._attributes = {"model.name": model_name, "model.version": model_version}
        self._batch_spans: dict[int, Span] = {}

    def start_queue_wait(self) -> RequestTrace | None:
        """Called in the request's task: the current span is its server span."""
        server = trace.get_current_span()
        if not server.is_recording():
            return None
        return RequestTrace(server.get_span_context(), self._tracer.start_span("queue wait"))

    def end_queue_wait(self, trace_context: object, reason: str) -> None:
        """A queued request left without being computed: end its queue wait as an error."""
        if isinstance(trace_context, RequestTrace) and trace_context.queue_span.is_recording():
            trace_context.queue_span.set_attribute("rejected.reason", reason)
            trace_context.queue_span.set_status(Status(StatusCode.ERROR, reason))
            trace_context.queue_span.end()

    def start_batch(
        self, batch_id: int, traces: Sequence[RequestTrace], rows: int, requests: int
    ) -> None:
        """End each request's queue wait; open the batch span linked to all of them."""
        if not traces:
            return
        for request_trace in traces:
            request_trace.queue_span.set_attribute("batch.id", batch_id)
            request_trace.queue_span.end()
        parent = trace.set_span_in_context(trace.NonRecordingSpan(traces[0].server_context))
        self._batch_spans[batch_id] = self._tracer.start_span(
            "inference batch",
            context=parent,
            links=[Link(t.server_context) for t in traces],
            attributes={
                **self._attributes,
                "batch.id": batch_id,
                "batch.size": rows,
                "batch.requests": requests,
            },
        )

    def end_batch(self, batch_id: int, error: BaseException | None, compute_seconds: float) -> None:
        span = self._batch_spans.pop(batch_id, None)
        if span is None:
            return
        span.set_attribute("batch.compute_ms", compute_seconds * 1000.0)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()


def sampled_traces(contexts: Iterable[object]) -> list[RequestTrace]:
    """The RequestTrace of every request that has one (the sampled ones)."""
    return [c for c in contexts if isinstance(c, RequestTrace)]
