from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import anyio
import numpy as np
import numpy.typing as npt
import pytest
from litestar import get
from litestar.response import Stream
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

import serving.observability.metrics
import serving.observability.requests
from model_repository.metadata import Metadata
from serving.app import ServiceApp, create_app
from serving.batching import Outputs
from serving.observability import Observability
from serving.observability.metrics import BufferedHistogram, ServingMetrics, observe_many
from serving.observability.requests import HttpMetrics
from serving.settings import Settings
from serving.testing import AppClient
from tests.serving.observability.conftest import AppFactory
from tests.support.routes import RoutesPlugin

JSON = {"content-type": "application/json"}

Array = npt.NDArray[np.float32]
PREDICT = {"route": "/v1/predict", "method": "POST", "key": "anonymous", "protocol": "http"}


def body(rows: int = 1, value: float = 0.1) -> dict[str, list[list[float]]]:
    return {"instances": [[value] * 784 for _ in range(rows)]}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_bulk_observe_matches_one_by_one() -> None:
    values = np.array([0.0, 0.1, 0.2, 0.2000001, 0.5, 0.95, 0.999, 1.0, 0.73, 0.5])
    bulk_registry, loop_registry = CollectorRegistry(), CollectorRegistry()
    bounds = (0.2, 0.5, 0.9, 1.0)
    bulk = Histogram("h", "h", buckets=bounds, registry=bulk_registry)
    loop = Histogram("h", "h", buckets=bounds, registry=loop_registry)
    observe_many(bulk, values)
    for value in values.tolist():
        loop.observe(value)
    assert samples(bulk_registry) == pytest.approx(samples(loop_registry))
    assert bulk_registry.get_sample_value("h_bucket", {"le": "0.2"}) == 3


def test_buffered_histogram_writes_on_flush_and_when_full(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    histogram = Histogram("h", "h", buckets=(0.2, 0.5, 1.0), registry=registry)
    buffered = BufferedHistogram(histogram)
    buffered.add(0.1)
    buffered.extend([0.3, 0.7])
    assert registry.get_sample_value("h_count") == 0  # recorded, not written
    buffered.flush()
    assert registry.get_sample_value("h_count") == 3
    assert registry.get_sample_value("h_bucket", {"le": "0.5"}) == 2
    assert registry.get_sample_value("h_sum") == pytest.approx(1.1)
    monkeypatch.setattr(serving.observability.metrics, "MAX_BUFFERED", 4)
    buffered.extend([0.1, 0.1, 0.1])
    assert registry.get_sample_value("h_count") == 3
    buffered.add(0.1)  # the 4th buffered value: flushes itself
    assert registry.get_sample_value("h_count") == 7


def test_model_quality_metrics_from_a_batch(registry: CollectorRegistry) -> None:
    metrics = ServingMetrics(registry, [str(i) for i in range(10)])
    probabilities = np.full((4, 10), 0.01, np.float32)
    probabilities[0, 3] = 0.91  # confident 3
    probabilities[1, 3] = 0.91  # confident 3
    probabilities[2, 7] = 0.40  # unsure 7 (rest of the mass spread)
    probabilities[3, 0] = 0.55  # borderline 0
    outputs = Outputs.of(probabilities)
    metrics.observe_outputs(outputs.labels, outputs.confidences, threshold=0.5)
    value = registry.get_sample_value
    assert value("inference_predictions_total", {"label": "3"}) == 2
    assert value("inference_predictions_total", {"label": "7"}) == 1
    assert value("inference_predictions_total", {"label": "0"}) == 1
    assert value("inference_predictions_total", {"label": "5"}) == 0
    assert value("inference_low_confidence_predictions_total") == 1
    assert value("inference_prediction_confidence_count") == 4
    assert value("inference_prediction_confidence_bucket", {"le": "0.5"}) == 1
    assert value("inference_prediction_confidence_sum") == pytest.approx(0.91 * 2 + 0.4 + 0.55)


def test_http_metrics_by_route_template_and_status(
    make_app: AppFactory, registry: CollectorRegistry
) -> None:
    app, _ = make_app()
    with AppClient(app) as client:
        for _ in range(3):
            assert client.post("/v1/predict", json=body()).status_code == 200
        assert client.post("/v1/predict", content=b"{", headers=JSON).status_code == 400
        assert client.get("/items/3").status_code == 200
        assert client.get("/items/4").status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/no/such/path/1").status_code == 404
        assert client.get("/no/such/path/2").status_code == 404
        assert client.request("BREW", "/v1/predict").status_code == 405
        scrape = client.get("/metrics")
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
    value = registry.get_sample_value
    assert value("inference_http_requests_total", {**PREDICT, "status": "200"}) == 3
    assert value("inference_http_requests_total", {**PREDICT, "status": "400"}) == 1
    items = {
        "route": "/items/{item_id}",
        "method": "GET",
        "status": "200",
        "key": "anonymous",
        "protocol": "http",
    }
    assert value("inference_http_requests_total", items) == 2
    assert value("inference_http_request_duration_seconds_count", {"route": "/v1/predict"}) == 4
    unmatched = {
        "route": "unmatched",
        "method": "GET",
        "status": "404",
        "key": "anonymous",
        "protocol": "http",
    }
    assert value("inference_http_requests_total", unmatched) == 2
    brewed = {
        "route": "unmatched",
        "method": "other",
        "status": "405",
        "key": "anonymous",
        "protocol": "http",
    }
    assert value("inference_http_requests_total", brewed) == 1
    assert value("inference_http_requests_in_flight") == 0
    routes = {
        s.labels["route"]
        for family in registry.collect()
        for s in family.samples
        if s.name == "inference_http_requests_total"
    }
    # Route templates only: no raw path, no /metrics, one label for everything unrouted.
    assert routes == {"/v1/predict", "/items/{item_id}", "/healthz", "unmatched"}
    families = {f.name for f in text_string_to_metric_families(scrape.text)}
    assert {"inference_http_requests", "inference_model_info", "inference_drift_psi"} <= families


def test_http_metrics_publish_per_label_key_and_by_themselves_when_full(
    metadata: Metadata, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving.observability.requests, "MAX_BUFFERED", 4)
    http = HttpMetrics(ServingMetrics(registry, metadata.labels), skip_paths=frozenset())
    value = registry.get_sample_value
    ok = {"route": "/p", "method": "POST", "status": "200", "key": "k1", "protocol": "http"}
    for seconds in (0.001, 0.002, 0.004):
        http.record(("/p", "POST", 200, "k1", "http"), seconds)
    assert value("inference_http_requests_total", ok) is None  # buffered, not yet written
    http.record((None, "BREW", 405, "anonymous", "http"), 0.0005)  # the 4th: writes all by itself
    assert value("inference_http_requests_total", ok) == 3
    odd = {
        "route": "unmatched",
        "method": "other",
        "status": "405",
        "key": "anonymous",
        "protocol": "http",
    }
    assert value("inference_http_requests_total", odd) == 1
    assert value("inference_http_request_duration_seconds_count", {"route": "/p"}) == 3
    assert value("inference_http_request_duration_seconds_sum", {"route": "/p"}) == pytest.approx(
        0.007
    )
    http.record(("/p", "POST", 200, "k1", "http"), 0.008)
    http.publish()
    assert value("inference_http_requests_total", ok) == 4


def test_in_flight_gauge_counts_requests_being_handled(
    metadata: Metadata, registry: CollectorRegistry, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(tracing_enabled=False)
    observability = Observability(settings, metadata, registry=registry)
    # The test client runs the app on its own event loop thread: thread primitives, and the
    # handler waits in a worker thread so that loop stays free to serve the scrapes.
    arrived, release = threading.Semaphore(0), threading.Event()

    @get("/hold")
    async def hold() -> str:
        arrived.release()
        await anyio.to_thread.run_sync(release.wait, 10.0)
        return "done"

    def in_flight_at_scrape(client: TestClient[ServiceApp]) -> float | None:
        assert client.get("/metrics").status_code == 200  # a scrape publishes the gauge
        return registry.get_sample_value("inference_http_requests_in_flight")

    app = create_app(settings, observability=observability, plugins=[RoutesPlugin(hold)])
    with AppClient(app) as client, ThreadPoolExecutor(2) as pool:
        held = [pool.submit(client.get, "/hold") for _ in range(2)]
        assert arrived.acquire(timeout=10)
        assert arrived.acquire(timeout=10)
        during = in_flight_at_scrape(client)
        release.set()
        assert [r.result().status_code for r in held] == [200, 200]
        after = in_flight_at_scrape(client)
    assert (during, after) == (2, 0)


def test_a_streamed_response_is_observed_once_at_its_last_chunk(
    metadata: Metadata, registry: CollectorRegistry, settings_for: Callable[..., Settings]
) -> None:
    """The hook ends a request on its LAST body message: a response sent in several chunks is
    one observation with its status, and leaves nothing in flight."""
    settings = settings_for(tracing_enabled=False)
    observability = Observability(settings, metadata, registry=registry)

    @get("/chunks", sync_to_thread=False)
    def chunks() -> Stream:
        return Stream(iter([b"a", b"b", b"c"]), status_code=206)

    app = create_app(settings, observability=observability, plugins=[RoutesPlugin(chunks)])
    with AppClient(app) as client:
        for _ in range(2):
            response = client.get("/chunks")
            assert (response.status_code, response.content) == (206, b"abc")
        assert client.get("/metrics").status_code == 200
    value = registry.get_sample_value
    labels = {
        "route": "/chunks",
        "method": "GET",
        "status": "206",
        "key": "anonymous",
        "protocol": "http",
    }
    assert value("inference_http_requests_total", labels) == 2
    assert value("inference_http_request_duration_seconds_count", {"route": "/chunks"}) == 2
    assert value("inference_http_requests_in_flight") == 0


def test_batch_quality_and_drift_metrics_after_known_traffic(
    make_app: AppFactory, registry: CollectorRegistry, metadata: Metadata
) -> None:
    app, _ = make_app()
    with AppClient(app) as client:
        for _ in range(5):
            assert client.post("/v1/predict", json=body(rows=2)).status_code == 200
        client.get("/metrics")
    value = registry.get_sample_value
    assert value("inference_batch_size_rows_count") == 5
    assert value("inference_batch_size_rows_sum") == 10
    assert value("inference_batch_requests_sum") == 5
    assert value("inference_queue_wait_seconds_count") == 5
    assert value("inference_batch_inference_seconds_count") == 5
    assert value("inference_prediction_confidence_count") == 10
    predicted = sum(value("inference_predictions_total", {"label": str(i)}) or 0 for i in range(10))
    assert predicted == 10
    assert value("inference_queue_depth_rows") == 0
    assert value("inference_drift_window_images") == 10
    mean = value("inference_drift_window_mean", {"feature": "mean_intensity"})
    assert mean == pytest.approx(0.1)
    sha = metadata.files["model.onnx"].sha256
    info = {"name": "mnist", "version": "1", "variant": "fp32", "sha256": sha}
    assert value("inference_model_info", info) == 1
    assert (value("inference_process_resident_memory_bytes") or 0) > 10_000_000
    assert (value("inference_process_cpu_seconds") or 0) > 0
