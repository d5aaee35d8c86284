from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer

from serving.batching import Outputs
from serving.batching.queue import Batcher, DeadlineExceededError
from serving.observability.observer import TelemetryObserver
from serving.observability.requests import ObservedRequests
from serving.observability.tracing import (
    BatchTracer,
    build_tracer_provider,
    otlp_exporter,
    request_traced,
    resolve_protocol,
)
from serving.testing import AppClient
from tests.serving.observability.conftest import AppFactory
from tests.support.slow_batcher import Hold, slow_batcher
from tests.support.waiting import until

Array = npt.NDArray[np.float32]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one_instance_body(rows: int = 1) -> dict[str, list[list[float]]]:
    return {"instances": [[0.1] * 784 for _ in range(rows)]}


def tracing_observer(exporter: InMemorySpanExporter) -> tuple[Tracer, TelemetryObserver]:
    """A tracer for the test's "server" spans and a batch observer, both exporting to memory."""
    provider = build_tracer_provider(
        service_name="t",
        service_version="0",
        processor=SimpleSpanProcessor(exporter),
    )
    tracer = provider.get_tracer("test")
    observer = TelemetryObserver(
        metrics=None,
        drift=None,
        tracer=BatchTracer(tracer, "mnist", "1"),
        low_confidence_threshold=0.5,
    )
    return tracer, observer


def test_request_gets_server_queue_wait_and_batch_spans(
    make_app: AppFactory, exporter: InMemorySpanExporter
) -> None:
    app, _ = make_app(tracing_enabled=True, trace_sample_ratio=1.0)
    with AppClient(app) as client:
        assert client.post("/v1/predict", json=one_instance_body(rows=2)).status_code == 200
    spans = exporter.get_finished_spans()
    # Only these three: the per-message "http send"/"http receive" spans are switched off.
    assert sorted(s.name for s in spans) == ["POST /v1/predict", "inference batch", "queue wait"]
    (server,) = by_name(spans, "POST /v1/predict")
    (wait,) = by_name(spans, "queue wait")
    (batch,) = by_name(spans, "inference batch")
    assert wait.parent is not None
    assert wait.parent.span_id == server.context.span_id
    assert wait.context.trace_id == server.context.trace_id
    assert batch.attributes is not None
    assert wait.attributes is not None
    assert wait.attributes["batch.id"] == batch.attributes["batch.id"]
    assert batch.attributes["batch.size"] == 2
    assert batch.attributes["batch.requests"] == 1
    assert batch.attributes["model.name"] == "mnist"
    assert batch.attributes["model.version"] == "1"
    assert float(str(batch.attributes["batch.compute_ms"])) > 0
    assert [link.context.span_id for link in batch.links] == [server.context.span_id]
    assert server.resource.attributes["service.name"] == "mnist-inference"
    assert server.resource.attributes["service.version"]


def test_only_a_request_marked_traced_starts_a_queue_wait_span(
    exporter: InMemorySpanExporter,
) -> None:
    """The batcher asks the cheap flag first: a current span alone (e.g. the caller's own) does
    not make the request traced; ``request_traced`` (set by every sampled server span) does."""
    tracer, observer = tracing_observer(exporter)
    assert observer.tracer is not None
    with tracer.start_as_current_span("caller's span") as caller:
        assert observer.tracer.start_queue_wait() is None
        with request_traced():
            marked = observer.tracer.start_queue_wait()
        assert observer.tracer.start_queue_wait() is None  # the mark ends with its block
    assert marked is not None
    assert marked.server_context == caller.get_span_context()


def test_batch_span_links_every_request_in_the_batch(
    predict: Callable[[Array], Array], exporter: InMemorySpanExporter
) -> None:
    tracer, observer = tracing_observer(exporter)

    hold = Hold()

    async def scenario() -> None:
        # the first batch is held in compute while the other requests queue up
        batcher = slow_batcher(predict, 0.0, observer, hold=hold)
        await batcher.start()

        async def request(i: int) -> None:
            with tracer.start_as_current_span(f"server {i}"), request_traced():
                await batcher.submit(np.full((1, 784), 0.1, np.float32), time.monotonic() + 60)

        hold.close()
        first = asyncio.create_task(request(0))
        await until(hold.entered.is_set)  # request 0 is computing now
        others = [asyncio.create_task(request(i)) for i in range(1, 5)]
        await until(lambda: batcher.queued_rows == 4)
        hold.release()
        await asyncio.gather(first, *others)
        await batcher.stop()

    asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    servers = {s.name: s for s in spans if s.name.startswith("server ")}
    batches = {
        s.attributes["batch.id"]: s for s in by_name(spans, "inference batch") if s.attributes
    }
    assert len(batches) == 2
    second = max(batches.values(), key=lambda s: len(s.links))
    assert second.attributes is not None
    assert second.attributes["batch.requests"] == 4
    assert second.attributes["batch.size"] == 4
    linked = {link.context.span_id for link in second.links}
    assert linked == {servers[f"server {i}"].context.span_id for i in range(1, 5)}
    # The batch span lives in the trace of the first linked request, so it is always sampled
    # together with it.
    assert second.context.trace_id in {servers[f"server {i}"].context.trace_id for i in range(5)}
    waits = by_name(spans, "queue wait")
    assert len(waits) == 5
    for wait in waits:
        assert wait.parent is not None
        assert wait.attributes is not None
        server = next(s for s in servers.values() if s.context.span_id == wait.parent.span_id)
        batch = batches[wait.attributes["batch.id"]]
        assert server.context.span_id in {link.context.span_id for link in batch.links}


def test_queue_wait_of_an_expired_request_ends_as_an_error(
    predict: Callable[[Array], Array], exporter: InMemorySpanExporter
) -> None:
    tracer, observer = tracing_observer(exporter)

    hold = Hold()

    async def scenario() -> None:
        # holds the only inference slot while the second request expires
        batcher = slow_batcher(predict, 0.0, observer, hold=hold)
        await batcher.start()

        async def request(name: str, timeout_s: float) -> None:
            with tracer.start_as_current_span(name), request_traced():
                await batcher.submit(
                    np.full((1, 784), 0.1, np.float32), time.monotonic() + timeout_s
                )

        hold.close()
        first = asyncio.create_task(request("computed", 60.0))
        await until(hold.entered.is_set)
        with pytest.raises(DeadlineExceededError):
            await request("expired", 0.05)  # its deadline counts from its own submit
        hold.release()
        await first
        await batcher.stop()

    asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    (expired,) = by_name(spans, "expired")
    (wait,) = [
        w
        for w in by_name(spans, "queue wait")
        if w.parent and w.parent.span_id == expired.context.span_id
    ]
    assert wait.attributes is not None
    assert wait.attributes["rejected.reason"] == "deadline"
    assert wait.status.status_code == StatusCode.ERROR
    assert "batch.id" not in wait.attributes


def test_caller_traceparent_is_honoured(
    make_app: AppFactory, exporter: InMemorySpanExporter
) -> None:
    app, _ = make_app(tracing_enabled=True, trace_sample_ratio=0.0)
    with AppClient(app) as client:
        response = client.post(
            "/v1/predict",
            json=one_instance_body(),
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
        assert response.status_code == 200
    spans = exporter.get_finished_spans()
    # Sampled by the caller although our own ratio is 0: the sampler is parent-based.
    assert sorted(s.name for s in spans) == ["POST /v1/predict", "inference batch", "queue wait"]
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    (server,) = by_name(spans, "POST /v1/predict")
    assert server.parent is not None
    assert f"{server.parent.span_id:016x}" == PARENT_ID


@pytest.mark.parametrize("traceparent", [None, f"00-{TRACE_ID}-{PARENT_ID}-00"])
def test_unsampled_requests_make_no_spans(
    make_app: AppFactory, exporter: InMemorySpanExporter, traceparent: str | None
) -> None:
    app, _ = make_app(tracing_enabled=True, trace_sample_ratio=0.0)
    headers = {"traceparent": traceparent} if traceparent else {}
    with AppClient(app) as client:
        for _ in range(5):
            response = client.post("/v1/predict", json=one_instance_body(), headers=headers)
            assert response.status_code == 200
    assert exporter.get_finished_spans() == ()


def test_health_and_metrics_routes_are_not_traced(
    make_app: AppFactory, exporter: InMemorySpanExporter
) -> None:
    app, _ = make_app(tracing_enabled=True, trace_sample_ratio=1.0)
    with AppClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/items/3").status_code == 200
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /items/{item_id}"]


def test_tracing_off_adds_no_middleware_and_no_spans(
    make_app: AppFactory, exporter: InMemorySpanExporter
) -> None:
    app, observability = make_app(tracing_enabled=False)
    assert observability.tracer_provider is None
    assert observability.observer.tracer is None
    with AppClient(app) as client:
        assert client.post("/v1/predict", json=one_instance_body()).status_code == 200
    observed = app.routes
    assert isinstance(observed, ObservedRequests)
    assert observed.spans is None
    assert exporter.get_finished_spans() == ()


def test_protocol_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_protocol(None) == "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert resolve_protocol(None) == "http/protobuf"
    assert resolve_protocol("grpc") == "grpc"
    assert isinstance(otlp_exporter("grpc"), GrpcExporter)
    assert isinstance(otlp_exporter("http/protobuf"), HttpExporter)


def test_unsampled_requests_make_no_spans_at_a_partial_ratio(
    make_app: AppFactory, exporter: InMemorySpanExporter
) -> None:
    app, _ = make_app(tracing_enabled=True, trace_sample_ratio=0.25)
    with AppClient(app) as client:
        for _ in range(400):
            assert client.post("/v1/predict", json=one_instance_body()).status_code == 200
    spans = exporter.get_finished_spans()
    servers = by_name(spans, "POST /v1/predict")
    # Each sampled request has its three spans; the ratio is applied once, not squared.
    assert 60 < len(servers) < 140
    assert len(by_name(spans, "queue wait")) == len(servers)


def test_batch_spans_name_the_version_that_computed_them(
    predict: Callable[[Array], Array], exporter: InMemorySpanExporter
) -> None:
    """Several versions are served at once, and a hot reload changes them: each batch span
    carries its own batcher's version, not the one the tracer was built with ("1")."""
    tracer, observer = tracing_observer(exporter)

    async def scenario() -> None:
        batchers = {
            version: Batcher(
                lambda batch: Outputs.of(predict(batch)),
                max_batch_size=8,
                max_batch_delay_ms=0,
                max_queue_size=8,
                observer=observer,
                model_version=version,
            )
            for version in ("3", "4")
        }
        for version, batcher in batchers.items():
            await batcher.start()
            with tracer.start_as_current_span(f"server {version}"), request_traced():
                await batcher.submit(np.full((1, 784), 0.1, np.float32), time.monotonic() + 5)
            await batcher.stop()

    asyncio.run(scenario())
    versions = sorted(
        str(span.attributes["model.version"])
        for span in by_name(exporter.get_finished_spans(), "inference batch")
        if span.attributes
    )
    assert versions == ["3", "4"]
