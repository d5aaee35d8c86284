"""``X-Request-ID`` on every response of the Litestar routes: the client's when sane, else one
generated, the same for the whole request (error bodies and logs quote it)."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from litestar.types import HTTPResponseStartEvent, Scope

from serving.api.request_id import add_request_id, request_id_of
from serving.pipeline.head import MAX_REQUEST_ID
from serving.settings import Settings
from tests.conftest import AppStarter

GENERATED = re.compile(r"[0-9a-f]{32}")


def scope(*headers: tuple[bytes, bytes]) -> Scope:
    return cast(Scope, {"type": "http", "headers": list(headers)})


def test_the_clients_id_is_kept() -> None:
    assert request_id_of(scope((b"x-request-id", b"abc-123"))) == "abc-123"


@pytest.mark.parametrize(
    "raw", [b"", b"tab\tinside", b"new\nline", b"x" * (MAX_REQUEST_ID + 1), b"\x00\x01"]
)
def test_an_empty_unprintable_or_long_id_is_replaced(raw: bytes) -> None:
    assert GENERATED.fullmatch(request_id_of(scope((b"x-request-id", raw))))


def test_one_id_per_request_however_often_it_is_asked() -> None:
    anonymous = scope()
    first = request_id_of(anonymous)
    assert GENERATED.fullmatch(first)
    assert request_id_of(anonymous) == first  # kept in the scope: logs and bodies agree
    assert request_id_of(scope()) != first  # another request, another id


def test_the_header_is_appended_to_those_of_the_response() -> None:
    request = scope((b"x-request-id", b"r-9"))
    message = cast(
        HTTPResponseStartEvent,
        {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]},
    )
    add_request_id(message, request)
    headers: Any = message["headers"]
    assert headers == [(b"a", b"1"), (b"x-request-id", b"r-9")]


# Moved from test_routes.py: the same rule on every kind of answer of the real app.
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("POST", "/v1/predict", 415),
        ("GET", "/nowhere", 404),
        ("GET", "/v1/predict", 405),
    ],
)
def test_request_id_is_echoed_and_generated(
    settings: Settings,
    method: str,
    path: str,
    status: int,
    app_client: AppStarter,
) -> None:
    with app_client(settings) as client:
        echoed = client.request(method, path, headers={"x-request-id": "abc-123"})
        generated = client.request(method, path)
    assert echoed.status_code == status
    assert echoed.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    if status >= 400:
        assert echoed.json()["error"] == {
            "status": status,
            "message": echoed.json()["error"]["message"],
            "request_id": "abc-123",
        }
