"""``ServiceApp``, the ASGI app the server runs: an admitted prediction goes to the pipeline, a
refusal decided at arrival is sent as it is (status line, then body; no app code), anything
else goes to Litestar. Without the HTTP protocol (a test client) the app runs ``arrive`` itself
and leaves the outcome in the scope, so both paths are one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.access.guard import ALLOW_ANONYMOUS
from serving.pipeline import ARRIVAL, Refusal, Ticket
from serving.pipeline.codec import Answer
from serving.pipeline.head import read_head
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import AppStarter
from tests.support.asgi import call, headers, http_scope
from tests.support.tiny_model import synthetic_images

RAW = (b"content-type", b"application/octet-stream")
BODY = (synthetic_images(1, seed=2) * 255).astype(np.uint8).tobytes()


class Arrivals:
    """Counts the app's own calls of ``pipeline.arrive``."""

    def __init__(self, client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = client.served.pipeline.arrive

        def arrive(*args: Any) -> Any:
            self.calls += 1
            return real(*args)

        self.real = real
        monkeypatch.setattr(client.served.pipeline, "arrive", arrive)


def test_a_prediction_no_protocol_saw_is_arrived_by_the_app_and_noted(
    app_client: AppStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app_client() as client:
        arrivals = Arrivals(client, monkeypatch)
        scope = http_scope("POST", "/v1/predict", RAW, (b"x-request-id", b"p-1"))
        start, body = call(client, scope, BODY)
    assert arrivals.calls == 1
    assert isinstance(scope["extensions"][ARRIVAL], Ticket)  # where observers look for it
    assert start["status"] == 200
    assert headers(start)[b"x-request-id"] == b"p-1"
    assert len(json.loads(body["body"])["predictions"]) == 1


def test_a_ticket_the_protocol_left_is_served_without_arriving_again(
    app_client: AppStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app_client() as client:
        arrivals = Arrivals(client, monkeypatch)
        head = read_head([RAW, (b"x-request-id", b"t-1")])
        ticket = client.blocking_portal.call(
            arrivals.real, "POST", "/v1/predict", head, time.monotonic()
        )
        assert isinstance(ticket, Ticket)
        scope = http_scope("POST", "/v1/predict", RAW)
        scope["extensions"] = {ARRIVAL: ticket}
        start, body = call(client, scope, BODY)
    assert arrivals.calls == 0  # admitted once, at arrival
    assert start["status"] == 200
    assert headers(start)[b"x-request-id"] == b"t-1"  # the ticket's, not a new one
    assert json.loads(body["body"])["model"] == {"name": "mnist", "version": "1"}


@pytest.mark.parametrize("close", [False, True])
def test_a_refusal_from_arrival_is_sent_as_it_is_in_order(
    app_client: AppStarter, monkeypatch: pytest.MonkeyPatch, close: bool
) -> None:
    """Even for a route Litestar would answer 200: the refusal is the answer, no app code."""
    refusal = Refusal(
        Answer(503, b'{"error": "not now"}', headers=[(b"retry-after", b"7")]),
        "/healthz",
        "r-9",
        close,
    )
    with app_client() as client:
        arrivals = Arrivals(client, monkeypatch)
        scope = http_scope("GET", "/healthz")
        scope["extensions"] = {ARRIVAL: refusal}
        sent = call(client, scope)
    assert arrivals.calls == 0
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    start, body = sent
    assert start["status"] == 503
    assert body["body"] == b'{"error": "not now"}'
    assert body["more_body"] is False
    expected = {
        b"content-type": b"application/json",
        b"content-length": b"20",
        b"x-request-id": b"r-9",
        b"retry-after": b"7",
    }
    if close:  # draining: a keep-alive client must not send its next request here
        expected[b"connection"] = b"close"
    assert headers(start) == expected


def test_an_allowed_decision_goes_to_the_litestar_routes(
    app_client: AppStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    with app_client() as client:
        arrivals = Arrivals(client, monkeypatch)
        scope = http_scope("GET", "/healthz", (b"x-request-id", b"h-1"))
        scope["extensions"] = {ARRIVAL: ALLOW_ANONYMOUS}
        start, *rest = call(client, scope)
    assert arrivals.calls == 0  # access was decided at arrival
    assert start["status"] == 200
    assert headers(start)[b"x-request-id"] == b"h-1"  # Litestar's before_send added it
    assert json.loads(b"".join(m.get("body", b"") for m in rest)) == {"status": "ok"}


def test_without_the_protocol_a_refused_route_is_answered_by_the_app(
    settings: Settings, app_client: AppStarter, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[keys]]\nname = "reader"\nkey = "key-of-the-reader-0123"\nscopes = ["read"]\n'
    )
    required = settings.model_copy(update={"keys_file": keys, "require_keys": True})
    with app_client(required) as client:
        scope = http_scope("GET", "/v1/models", (b"x-request-id", b"k-1"))
        start, body = call(client, scope)
        allowed = client.get(
            "/v1/models", headers={"authorization": "Bearer key-of-the-reader-0123"}
        )
    assert isinstance(scope["extensions"][ARRIVAL], Refusal)
    assert start["status"] == 401
    assert headers(start)[b"www-authenticate"].startswith(b"Bearer")
    assert json.loads(body["body"])["error"]["request_id"] == "k-1"
    assert allowed.status_code == 200


def test_the_app_exposes_the_parts_create_app_wired(
    settings: Settings, app_client: AppStarter
) -> None:
    small = settings.model_copy(update={"max_body_bytes": 4096})
    with app_client(small) as client:
        app = client.served
        too_big = client.post("/v1/feedback", content=b"x" * 5000)
        assert client.service.ready
    assert app.service is app.pipeline.service is client.service
    assert app.litestar is not app.routes  # observed: the wrapper the server calls
    assert too_big.status_code == 413  # Litestar's own body limit is the service's
