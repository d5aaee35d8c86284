"""The SERVER span of a sampled request (serving/observability/requests.py): the sampling
decision from the raw headers, and the span's name, kind, attributes and status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from litestar.testing import TestClient
from litestar.types import Scope
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from serving.app import ServiceApp
from serving.observability.requests import head_sampled
from serving.testing import AppClient
from tests.serving.observability.conftest import AppFactory

JSON = {"content-type": "application/json"}

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def traced(make_app: AppFactory) -> Iterator[TestClient[ServiceApp]]:
    """A client of the fixture app in which every request is traced."""
    app, _ = make_app(tracing_enabled=True, trace_sample_ratio=1.0)
    with AppClient(app) as client:
        yield client


def scope_with(*headers: tuple[bytes, bytes]) -> Scope:
    return cast(Scope, {"type": "http", "headers": list(headers)})


def test_head_sampling_follows_the_callers_flag_over_the_ratio() -> None:
    sampled = (b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01".encode())
    unsampled = (b"traceparent", f"00-{TRACE_ID}-{PARENT_ID}-00".encode())
    assert head_sampled(scope_with(sampled), ratio=0.0)
    assert not head_sampled(scope_with(unsampled), ratio=1.0)


def test_head_sampling_of_roots_uses_the_ratio() -> None:
    malformed = (b"traceparent", b"garbage")
    assert not any(head_sampled(scope_with(malformed), ratio=0.0) for _ in range(100))
    assert all(head_sampled(scope_with(), ratio=1.0) for _ in range(100))
    share = sum(head_sampled(scope_with(), ratio=0.3) for _ in range(4000)) / 4000
    assert 0.25 < share < 0.35


def test_server_span_follows_the_http_semantic_conventions(
    traced: TestClient[ServiceApp], exporter: InMemorySpanExporter
) -> None:
    assert traced.get("/items/7").status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /items/{item_id}"
    assert span.kind == SpanKind.SERVER
    assert span.parent is None
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/items/7",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
        "enduser.id": "anonymous",  # the API key's name (no keys file here)
    }
    assert span.status.status_code == StatusCode.UNSET


def test_server_error_marks_the_span_as_an_error(
    traced: TestClient[ServiceApp], exporter: InMemorySpanExporter
) -> None:
    assert traced.get("/boom").status_code == 500
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /boom"
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 500
    assert span.attributes["error.type"] == "500"


def test_client_errors_and_unrouted_requests_are_not_errors(
    traced: TestClient[ServiceApp], exporter: InMemorySpanExporter
) -> None:
    assert traced.get("/nowhere").status_code == 404
    assert traced.post("/v1/predict", content=b"{", headers=JSON).status_code == 400
    unrouted, bad_request = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    # Without a matched route the name is the method alone and there is no http.route.
    assert unrouted.name == "GET"
    assert unrouted.attributes is not None
    assert "http.route" not in unrouted.attributes
    assert unrouted.attributes["http.response.status_code"] == 404
    assert bad_request.name == "POST /v1/predict"
    assert bad_request.attributes is not None
    assert bad_request.attributes["http.response.status_code"] == 400
    for span in (unrouted, bad_request):
        assert span.status.status_code == StatusCode.UNSET
        assert "error.type" not in (span.attributes or {})
