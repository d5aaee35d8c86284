"""``ObservabilityPlugin``, the Litestar side of observability: ``GET /metrics`` (only with
metrics on, never in the API document), refused inputs of the Litestar routes counted, and the
sampler started and stopped with the app, the last observations written at shutdown."""

from __future__ import annotations

from litestar import post
from prometheus_client import CollectorRegistry

from model_repository.metadata import Metadata
from serving.observability import Observability
from serving.observability.metrics import CONTENT_TYPE
from serving.pipeline.errors import InvalidInputError
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import AppStarter
from tests.serving.observability.conftest import AppFactory
from tests.serving.observability.test_metrics import body
from tests.support.routes import RoutesPlugin


@post("/labels/check", sync_to_thread=False)
def check_labels() -> None:
    raise InvalidInputError("label 12 is not a digit", "out_of_range")


def observed(settings: Settings, metadata: Metadata, registry: CollectorRegistry) -> Observability:
    return Observability(settings, metadata, registry=registry)


def test_metrics_are_served_with_prometheus_content_type_outside_the_api_document(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry, app_client: AppStarter
) -> None:
    observability = observed(settings, metadata, registry)
    with app_client(settings, observability=observability) as client:
        scrape = client.get("/metrics")
        document = client.get("/schema/openapi.json").json()
    assert scrape.status_code == 200
    # Exactly prometheus_client's: one charset (a repeated parameter is a malformed media type
    # to Go's mime parser, and Prometheus 3 fails such a scrape).
    assert scrape.headers["content-type"] == CONTENT_TYPE
    assert "inference_model_info{" in scrape.text
    assert "/metrics" not in document["paths"]


def test_refused_inputs_of_the_litestar_routes_are_counted_by_reason(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry, app_client: AppStarter
) -> None:
    observability = observed(settings, metadata, registry)
    routes = RoutesPlugin(check_labels)
    with app_client(settings, observability=observability, plugins=[routes]) as client:
        assert client.post("/labels/check").status_code == 422
        assert client.post("/labels/check").status_code == 422
    rejected = registry.get_sample_value(
        "inference_rejected_inputs_total", {"reason": "out_of_range"}
    )
    assert rejected == 2


def test_the_sampler_runs_with_the_app_and_writes_the_last_observations_at_shutdown(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry, app_client: AppStarter
) -> None:
    """A sample interval no test reaches: what is in the registry after shutdown was written by
    the sampler's final sample, not by a scrape or a periodic one."""
    slow = settings.model_copy(update={"metrics_sample_interval_s": 3600})
    observability = observed(slow, metadata, registry)
    with app_client(slow, observability=observability) as client:
        assert client.post("/v1/predict", json=body(rows=3)).status_code == 200
        buffered = registry.get_sample_value("inference_batch_size_rows_sum")
    assert buffered == 0  # recorded, not yet written: no scrape, no sample since
    assert registry.get_sample_value("inference_batch_size_rows_sum") == 3
    predict = {"key": "anonymous", "method": "POST", "protocol": "http", "route": "/v1/predict"}
    requests = registry.get_sample_value(
        "inference_http_requests_total", {**predict, "status": "200"}
    )
    assert requests == 1


# Moved from test_metrics.py: with metrics off the plugin adds no route and nothing is observed.
def test_metrics_off_means_no_route_and_no_middleware(
    make_app: AppFactory, registry: CollectorRegistry
) -> None:
    app, plugin = make_app(metrics_enabled=False)
    assert plugin.metrics is None
    with AppClient(app) as client:
        assert client.post("/v1/predict", json=body()).status_code == 200
        assert client.get("/metrics").status_code == 404
    assert list(registry.collect()) == []
