"""The OpenAPI document and its page: what access control answers is documented on every
operation it guards (``document_access``), and the page at /schema renders in a real Chromium
with no network beyond the service."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.openapi.spec import (
    Components,
    Info,
    OpenAPI,
    OpenAPIResponse,
    Operation,
    PathItem,
)
from playwright.sync_api import Browser

from serving.api.openapi import BEARER, document_access, openapi_config
from tests.conftest import AppStarter
from tests.support.browser import offline_page
from tests.support.server import RunningServer

REFUSALS = {"401", "403", "429"}
INFO = Info(title="t", version="1")


def document(paths: dict[str, PathItem]) -> OpenAPI:
    return OpenAPI(info=INFO, servers=[], components=Components(), paths=paths)


def operation() -> Operation:
    return Operation(responses={"200": OpenAPIResponse(description="fine")})


def test_guarded_operations_document_the_refusals_in_their_routes_shape() -> None:
    generated = document(
        {
            "/healthz": PathItem(get=operation()),
            "/v1/predict": PathItem(post=operation()),
            "/v2/models/{name}/infer": PathItem(post=operation()),
            "/v2/repository/index": PathItem(post=operation()),
        },
    )
    paths: Any = document_access(generated).paths
    health = paths["/healthz"].get
    predict = paths["/v1/predict"].post
    infer = paths["/v2/models/{name}/infer"].post
    index = paths["/v2/repository/index"].post
    assert set(health.responses) == {"200"}  # open: nothing to refuse
    assert health.security is None
    for guarded in (predict, infer, index):
        assert set(guarded.responses) == {"200", *REFUSALS}
    shape = predict.responses["401"].content["application/json"].schema.ref
    oip_shape = infer.responses["429"].content["application/json"].schema.ref
    assert shape == "#/components/schemas/ErrorBody"
    assert oip_shape == "#/components/schemas/OipError"  # the shape /v2 errors take
    # Anonymous callers may use every scope but admin (unless keys are required).
    assert predict.security == infer.security == [{}, {BEARER: []}]
    assert index.security == [{BEARER: []}]
    schemes: Any = generated.components.security_schemes
    scheme = schemes[BEARER]
    assert (scheme.type, scheme.scheme) == ("http", "bearer")


def test_a_response_the_route_documents_itself_is_kept() -> None:
    own = OpenAPIResponse(description="the route's own 429")
    paths: Any = document_access(
        document({"/v1/models": PathItem(get=Operation(responses={"429": own}))})
    ).paths
    assert paths["/v1/models"].get.responses["429"] is own


def test_the_served_document_has_the_scheme_and_every_guarded_operations_refusals(
    app_client: AppStarter,
) -> None:
    with app_client() as client:
        document = client.get("/schema/openapi.json").json()
    assert document["components"]["securitySchemes"][BEARER] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key",
    }
    assert document["info"]["title"] == openapi_config("1.0.0").title
    guarded = 0
    for path, item in document["paths"].items():
        for method, op in item.items():
            if path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/"):
                assert REFUSALS.isdisjoint(op["responses"]), (method, path)
                continue
            assert set(op["responses"]) >= REFUSALS, (method, path)
            guarded += 1
    assert guarded > 10


@pytest.mark.e2e
def test_schema_page_renders_offline(browser: Browser, page_server: RunningServer) -> None:
    with offline_page(browser, page_server.base_url) as opened:
        opened.page.goto(opened.url("/schema"))
        operation = opened.page.locator(".opblock-summary-path", has_text="/v1/predict")
        operation.first.wait_for(timeout=15_000)
        assert (
            opened.page.locator(".swagger-ui .title")
            .first.inner_text()
            .startswith("MNIST inference service")
        )
        assert opened.problems() == []
