"""OpenTelemetry: the TracerProvider and its OTLP exporter, and the batch spans.

The provider is built per app and never installed globally (``trace.set_tracer_provider`` works
once per process, and tests build many apps): the server spans (:mod:`.requests`) and the
spans made here get their tracers from it directly.

Span layout per request::

    POST /v1/predict            (server span, requests.py, honours traceparent)
      └─ queue wait             (enqueue -> batch start; attribute batch.id)
    inference batch             (child of the first sampled request, LINKED to every sampled one)

Only sampled requests get spans: an unsampled request costs one ContextVar read at enqueue.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, Tracer

OtlpProtocol = Literal["grpc", "http/protobuf"]

#: True in the task of a request that has a server span (:func:`request_traced`): one C call
#: tells an unsampled request apart, cheaper than OpenTelemetry's current-span lookup.
TRACED_REQUEST: ContextVar[bool] = ContextVar("traced_request", default=False)


@contextmanager
def request_traced() -> Iterator[None]:
    """Mark the current task's request as traced: its queue wait and batch get spans.

    ``requests.ServerSpans.trace`` does this inside every sampled request's server span; code that
    submits to the batcher under a span of its own does it too.
    """
    token = TRACED_REQUEST.set(True)
    try:
        yield
    finally:
        TRACED_REQUEST.reset(token)


#: Instrumentation scopes of the spans: the HTTP server spans and the batching spans.
HTTP_INSTRUMENTATION = "serving.http"
BATCH_INSTRUMENTATION = "serving.batching"


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
    processor: SpanProcessor | None = None,
    protocol: OtlpProtocol | None = None,
) -> TracerProvider:
    """A provider that keeps every root it is handed and follows sampled parents.

    The ratio is applied before a span exists (``requests.ServerSpans``), so the provider's own
    sampler must not drop roots a second time.

    ``processor`` defaults to a BatchSpanProcessor over the OTLP exporter: spans are exported on
    a background thread, so a slow or dead collector never delays a response (the queue drops
    spans when full). Tests pass a SimpleSpanProcessor over an in-memory exporter.
    """
    resource = Resource.create({"service.name": service_name, "service.version": service_version})
    provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(
        processor or BatchSpanProcessor(otlp_exporter(resolve_protocol(protocol)))
    )
    return provider


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
        if not TRACED_REQUEST.get():
            return None
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
        self,
        batch_id: int,
        traces: Sequence[RequestTrace],
        rows: int,
        requests: int,
        model_version: str = "",
    ) -> None:
        """End each request's queue wait; open the batch span linked to all of them.

        ``model_version``: the version that computes the batch (several may be served, and a
        hot reload changes them), else the one the tracer was built with.
        """
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
                **({"model.version": model_version} if model_version else {}),
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
