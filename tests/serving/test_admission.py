"""Admission at arrival: refused from the headers, before the body is read or decoded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from serving.admission import expected_rows, retry_after_s
from serving.app import create_app
from serving.lifecycle import Service
from serving.settings import Settings
from tests.serving.api.conftest import Gated
from tests.support.tiny_model import synthetic_images


@pytest.mark.parametrize(
    ("content_type", "length", "rows"),
    [
        (b"application/octet-stream", b"784", 1),
        (b"application/octet-stream", b"7840", 10),
        (b"Application/Octet-Stream; x=y", b"1568", 2),
        (b"application/json", b"6000", 1),
        (b"application/json; charset=utf-8", b"2000000", 106),
        (b"image/png", b"500000", 1),
        (b"text/plain", b"99999", 1),
        (b"application/json", None, 1),
        (b"application/json", b"-5", 1),
    ],
)
def test_expected_rows_is_a_lower_bound_from_the_headers(
    content_type: bytes, length: bytes | None, rows: int
) -> None:
    assert expected_rows(content_type, length) == rows


def test_retry_after_is_whole_seconds_from_1_to_30() -> None:
    assert [retry_after_s(s) for s in (0.0, 0.2, 1.0, 1.01, 7.5, 1e9)] == [1, 1, 1, 2, 8, 30]


@pytest.fixture
def gated() -> Gated:
    return Gated()


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def _hold_a_batch_and_queue(client: TestClient[Any], gated: Gated, rows: int) -> list[Any]:
    """One request computing (held inside onnxruntime), then ``rows`` rows waiting behind it."""
    session = gated.session
    assert session is not None
    service: Service = client.app.state.service
    assert service.batcher is not None
    batcher = service.batcher
    session.gate.clear()
    session.entered.clear()
    results: list[Any] = []

    def post(count: int) -> None:
        body = {"instances": synthetic_images(count).tolist()}
        results.append(client.post("/v1/predict", json=body))

    threading.Thread(target=post, args=(1,)).start()
    _wait(session.entered.is_set)
    threading.Thread(target=post, args=(rows,)).start()
    _wait(lambda: batcher.queued_rows == rows)
    return results


def test_a_full_queue_refuses_before_reading_the_body(
    tiny_model_repository: Path, gated: Gated
) -> None:
    """Malformed bytes would be a 400 if read: a 503 proves the body was never decoded."""
    settings = Settings(model_repository=tiny_model_repository, max_instances=4, max_queue_size=4)
    with TestClient(create_app(settings, model_loader=gated.loader())) as client:
        results = _hold_a_batch_and_queue(client, gated, rows=4)
        refused = client.post(
            "/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert gated.session is not None
        gated.session.gate.set()
        _wait(lambda: len(results) == 2)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "queue full" in refused.json()["error"]["message"]
    assert refused.headers.get("connection") != "close"  # a shed request keeps its connection
    assert [r.status_code for r in results] == [200, 200]


def test_a_wait_beyond_the_deadline_is_refused_at_once_with_retry_after(
    tiny_model_repository: Path, gated: Gated
) -> None:
    settings = Settings(model_repository=tiny_model_repository, max_instances=8)
    with TestClient(create_app(settings, model_loader=gated.loader())) as client:
        service: Service = client.app.state.service
        assert service.batcher is not None
        meter = service.batcher.throughput
        meter.record(rows=1, taken_at=0.0, finished_at=0.5, backlog=False)  # 0.5 s per row
        results = _hold_a_batch_and_queue(client, gated, rows=4)
        body = {"instances": synthetic_images(1).tolist()}
        started = time.monotonic()
        short = client.post("/v1/predict", json=body, headers={"x-request-timeout-ms": "1000"})
        refused_in = time.monotonic() - started
        # 5 rows ahead x 0.5 s = 2.5 s: fits a 10 s deadline, not a 1 s one.
        long_result: list[Any] = []
        thread = threading.Thread(
            target=lambda: long_result.append(
                client.post("/v1/predict", json=body, headers={"x-request-timeout-ms": "10000"})
            )
        )
        thread.start()
        _wait(lambda: service.queued_rows() == 5)
        assert gated.session is not None
        gated.session.gate.set()
        thread.join(timeout=10)
        _wait(lambda: len(results) == 2)
    assert short.status_code == 503
    assert short.headers["retry-after"] == "2"  # ceil(2.5 s - 1 s)
    assert "overloaded" in short.json()["error"]["message"]
    assert refused_in < 0.5
    assert long_result[0].status_code == 200
    assert [r.status_code for r in results] == [200, 200]
