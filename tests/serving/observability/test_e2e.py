"""A real ``python -m serving`` process (tiny real ONNX model) exporting spans over OTLP/gRPC to a
real receiver (oteltest's GrpcSink), and scraped on /metrics."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from oteltest.sink import GrpcSink
from oteltest.sink.handler import RequestHandler
from prometheus_client.parser import text_string_to_metric_families

from serving.testing import ServerProcess
from tests.conftest import ServerStarter
from tests.support.metrics import queued_rows, wait_for
from tests.support.server import REPO, free_port
from tests.support.slow_serving import entered
from tests.support.tiny_model import write_model_version
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SLOW_SERVE = ("-m", "tests.support.slow_serving")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
REQUESTS = 24


class SpanCollector(RequestHandler):  # type: ignore[misc]
    """Keeps every span the sink receives, with its resource attributes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict[str, Any]] = []

    def handle_trace(self, request: Any, headers: Any) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "links": [link.span_id.hex() for link in span.links],
                                "attributes": {a.key: a.value for a in span.attributes},
                                "resource": resource,
                            }
                        )

    def handle_metrics(self, request: Any, headers: Any) -> None:
        pass

    def handle_logs(self, request: Any, headers: Any) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["name"] == name]


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_model_version(root)
    return root


def server_env(model_repository: Path, **env: str) -> dict[str, str]:
    return {
        "SERVING_MODEL_REPOSITORY": str(model_repository),
        "SERVING_LOG_LEVEL": "warning",
        **env,
    }


@pytest.fixture
def sink() -> Iterator[tuple[SpanCollector, int]]:
    collector = SpanCollector()
    port = free_port()
    grpc_sink = GrpcSink(collector, logging.getLogger("sink"), port=port)
    grpc_sink.start()
    yield collector, port
    grpc_sink.stop()


def digits(rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.random((rows, 784)) * 200).astype(np.uint8).tobytes()


def predict(
    client: httpx.Client, url: str, rows: int, seed: int, headers: dict[str, str] | None = None
) -> float:
    """One request over a keep-alive client; returns its duration in seconds."""
    started = time.perf_counter()
    response = client.post(
        f"{url}/v1/predict",
        content=digits(rows, seed),
        headers={"content-type": "application/octet-stream", **(headers or {})},
    )
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_spans_reach_a_real_otlp_receiver_and_metrics_count_the_traffic(
    model_repository: Path, sink: tuple[SpanCollector, int], tmp_path: Path
) -> None:
    collector, port = sink
    # The first batch is held in compute (slow_serving's gate file) until the others are
    # queued behind it: they are then batched together, whatever the machine's speed.
    gate = tmp_path / "gate"
    gate.touch()
    env = server_env(
        model_repository,
        SERVING_TRACING_ENABLED="true",
        SERVING_TRACE_SAMPLE_RATIO="1.0",
        SERVING_MAX_BATCH_DELAY_MS="5",
        SERVING_INLINE_MAX_ROWS="0",  # held on the inference thread, never on the event loop
        SERVING_REQUEST_TIMEOUT_MS="30000",
        SERVING_OTLP_PROTOCOL="grpc",  # the sink speaks gRPC; the dead-collector test uses HTTP
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
        SLOW_BATCH_MS="0",
        SLOW_ROW_MS="0",
        SLOW_GATE_FILE=str(gate),
    )
    server = ServerProcess(
        tmp_path / "server.log", args=SLOW_SERVE, env=env, cwd=REPO, ready_timeout_s=60
    )
    with server:
        url = server.base_url
        with httpx.Client(timeout=60) as client, ThreadPoolExecutor(REQUESTS) as pool:
            first = pool.submit(predict, client, url, 2, 0)
            wait_until(entered(gate).exists, what="the first batch held in compute")
            rest = [pool.submit(predict, client, url, 2, i) for i in range(1, REQUESTS)]
            queued = 2 * (REQUESTS - 1)
            wait_for(url, lambda samples: queued_rows(samples) == queued)
            gate.unlink()
            for future in (first, *rest):
                future.result()
            traceparent = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
            predict(client, url, 1, 99, traceparent)
            assert client.get(f"{url}/healthz").status_code == 200
            scrape = client.get(f"{url}/metrics")
        assert scrape.status_code == 200
        code, stderr = server.stop(), server.log()
    assert code == 0, stderr
    assert "Traceback" not in stderr

    values = metric_values(scrape.text)
    ok = (
        ("key", "anonymous"),
        ("method", "POST"),
        ("protocol", "http"),
        ("route", "/v1/predict"),
        ("status", "200"),
    )
    assert values[("inference_http_requests_total", ok)] == REQUESTS + 1
    assert values[("inference_batch_size_rows_sum", ())] == 2 * REQUESTS + 1
    assert values[("inference_queue_wait_seconds_count", ())] == REQUESTS + 1
    assert values[("inference_prediction_confidence_count", ())] == 2 * REQUESTS + 1
    assert sum(v for (n, _), v in values.items() if n == "inference_predictions_total") == (
        2 * REQUESTS + 1
    )
    assert values[("inference_drift_window_images", ())] == 2 * REQUESTS + 1
    routes = {
        dict(labels)["route"] for (n, labels) in values if n == "inference_http_requests_total"
    }
    assert "/metrics" not in routes

    servers = collector.named("POST /v1/predict")
    waits = collector.named("queue wait")
    batches = collector.named("inference batch")
    assert len(servers) == REQUESTS + 1
    assert len(waits) == REQUESTS + 1
    names = {s["name"] for s in collector.spans}
    assert names == {"POST /v1/predict", "queue wait", "inference batch"}  # no probe/scrape spans
    server_ids = {s["span_id"] for s in servers}
    assert {w["parent"] for w in waits} == server_ids
    linked = [link for b in batches for link in b["links"]]
    assert sorted(linked) == sorted(server_ids)  # every request linked from exactly one batch
    assert sum(b["attributes"]["batch.size"].int_value for b in batches) == 2 * REQUESTS + 1
    assert sum(b["attributes"]["batch.requests"].int_value for b in batches) == REQUESTS + 1
    assert {b["attributes"]["model.name"].string_value for b in batches} == {"mnist"}
    batch_ids = {b["attributes"]["batch.id"].int_value for b in batches}
    assert {w["attributes"]["batch.id"].int_value for w in waits} == batch_ids
    # The requests queued behind the held batch were computed together, in one batch.
    assert max(len(b["links"]) for b in batches) == REQUESTS - 1
    assert servers[0]["resource"]["service.name"] == "mnist-inference"
    assert TRACE_ID in {s["trace_id"] for s in servers}


class SilentCollector:
    """A collector that accepts exports and never answers them: each export then hangs for the
    exporter's whole timeout (the worst a collector can do to the service)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.received = 0
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: done
            while True:
                connection, _ = self.listener.accept()
                self.connections.append(connection)
                threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                self.received += len(chunk)

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def silent_collector() -> Iterator[SilentCollector]:
    collector = SilentCollector()
    yield collector
    collector.close()


#: How long an export may take (the exporter's timeout, in seconds). A request or a shutdown that
#: waited for one would take about this long: the bounds below are far from it and from what a
#: busy machine needs.
EXPORT_TIMEOUT_S = 30


@pytest.mark.parametrize("collector", ["refusing", "silent"])
def test_a_dead_collector_changes_nothing_for_clients(
    model_repository: Path,
    serving_server: ServerStarter,
    silent_collector: SilentCollector,
    collector: str,
) -> None:
    """Nothing listens (every export fails and is retried with backoff), or the collector
    accepts and never answers (every export hangs): requests and shutdown never wait for it."""
    port = free_port() if collector == "refusing" else silent_collector.port
    env = server_env(
        model_repository,
        SERVING_TRACING_ENABLED="true",
        SERVING_TRACE_SAMPLE_RATIO="1.0",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_EXPORTER_OTLP_TIMEOUT=str(EXPORT_TIMEOUT_S),
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    with serving_server(env) as server:
        url = server.base_url
        with httpx.Client(timeout=60) as client:
            durations = [predict(client, url, 1, i) for i in range(40)]
            # An export is under way and failing: retrying (logged), or hanging on the socket.
            if collector == "refusing":
                wait_until(lambda: "Transient error" in server.log(), what="a failed export")
            else:
                wait_until(lambda: silent_collector.received > 0, what="an export in flight")
            durations += [predict(client, url, 1, i) for i in range(40)]
        started = time.monotonic()
        code = server.stop()
        shutdown = time.monotonic() - started
        stderr = server.log()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    # Exports run on the BatchSpanProcessor thread: a request never waits for one, and shutdown
    # flushes for at most 2 s (FLUSH_TIMEOUT_S). Generous bounds, far below EXPORT_TIMEOUT_S.
    assert max(durations) < 10.0, durations
    assert shutdown < 20.0


def test_the_standard_otel_variables_alone_give_traces(
    model_repository: Path, sink: tuple[SpanCollector, int], serving_server: ServerStarter
) -> None:
    """No SERVING_* tracing setting: endpoint, protocol, sampler and service name are OTEL_*."""
    collector, port = sink
    env = server_env(
        model_repository,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        OTEL_SERVICE_NAME="digits-from-otel",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with serving_server(env) as server, httpx.Client(timeout=10) as client:
        for i in range(5):
            predict(client, server.base_url, 1, i)
        code = server.stop()
    assert code == 0, server.log()
    servers = collector.named("POST /v1/predict")
    assert len(servers) == 5  # always_on: every root is sampled (the default ratio is 0.01)
    assert {s["resource"]["service.name"] for s in servers} == {"digits-from-otel"}


def test_otel_sdk_disabled_turns_the_standard_endpoint_off(
    model_repository: Path, sink: tuple[SpanCollector, int], serving_server: ServerStarter
) -> None:
    collector, port = sink
    env = server_env(
        model_repository,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_SDK_DISABLED="true",
        OTEL_BSP_SCHEDULE_DELAY="50",
    )
    with serving_server(env) as server, httpx.Client(timeout=10) as client:
        for i in range(3):
            predict(client, server.base_url, 1, i)
        assert server.stop() == 0
    # The process has exited, so any span it sent has arrived (the test above reads them at
    # once). The pause only leaves a wrongly exported span time to show; it cannot fail a pass.
    time.sleep(0.3)
    assert collector.spans == []
