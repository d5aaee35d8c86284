"""The Litestar routes' errors: the pipeline's shapes (v1 object with the request id, OIP's
string under /v2), a status from ``status_of``, Retry-After on a 503, the headers of Litestar's
own HTTP errors kept, and an unexpected error logged with the request id but never shown."""

from __future__ import annotations

import logging

import pytest
from litestar import get

from serving.batching import QueueFullError
from serving.lifecycle import NotReadyError
from serving.pipeline.errors import InvalidInputError
from tests.conftest import AppStarter
from tests.support.routes import RoutesPlugin


@get("/failing/bug", sync_to_thread=False)
def bug() -> None:
    raise RuntimeError("/secret/path: a bug in a handler")


@get("/failing/busy", sync_to_thread=False)
def busy() -> None:
    raise QueueFullError("queue full; retry later")


@get("/v2/failing/loading", sync_to_thread=False)
def loading() -> None:
    raise NotReadyError("the model is loading")


@get("/v2/failing/invalid", sync_to_thread=False)
def invalid() -> None:
    raise InvalidInputError("instance 0 has 3 values")


ROUTES = RoutesPlugin(bug, busy, loading, invalid)


def test_an_unexpected_error_is_500_logged_with_the_request_id_and_not_shown(
    app_client: AppStarter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "serving.api.errors"), app_client(plugins=[ROUTES]) as c:
        response = c.get("/failing/bug", headers={"x-request-id": "bug-1"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["status"] == 500
    assert error["request_id"] == "bug-1" == response.headers["x-request-id"]
    assert "secret" not in error["message"]
    (record,) = [r for r in caplog.records if r.name == "serving.api.errors"]
    assert "bug-1" in record.getMessage()
    assert record.exc_info is not None
    assert "secret" in str(record.exc_info[1])  # the log has what the client is not shown


def test_a_503_says_when_to_retry_in_the_v1_shape(app_client: AppStarter) -> None:
    with app_client(plugins=[ROUTES]) as client:
        response = client.get("/failing/busy", headers={"x-request-id": "b-1"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "error": {"status": 503, "message": "queue full; retry later", "request_id": "b-1"}
    }


def test_under_v2_errors_take_the_oip_shape(app_client: AppStarter) -> None:
    with app_client(plugins=[ROUTES]) as client:
        loading_ = client.get("/v2/failing/loading")
        invalid_ = client.get("/v2/failing/invalid")
        missing = client.get("/v2/models/mnist/nowhere")
    assert loading_.status_code == 503
    assert loading_.headers["retry-after"] == "1"
    assert loading_.json() == {"error": "the model is loading"}
    assert invalid_.status_code == 400  # OIP folds 422 into 400
    assert invalid_.json() == {"error": "instance 0 has 3 values"}
    assert missing.status_code == 404
    assert isinstance(missing.json()["error"], str)


def test_litestars_own_errors_keep_their_status_and_headers(app_client: AppStarter) -> None:
    with app_client() as client:
        unknown = client.get("/v1/models/x")
        not_allowed = client.put("/v1/models")
        oip_not_allowed = client.delete("/v2/health/ready")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["status"] == 404
    assert not_allowed.status_code == 405
    assert "GET" in not_allowed.headers["allow"]  # the HTTPException's own header survives
    assert not_allowed.json()["error"]["request_id"] == not_allowed.headers["x-request-id"]
    assert oip_not_allowed.status_code == 405
    assert "allow" in oip_not_allowed.headers
    assert isinstance(oip_not_allowed.json()["error"], str)
