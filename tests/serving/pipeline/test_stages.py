"""The pipeline's stages on the real tiny model, driven through its own API (``arrive`` and
``serve`` with ASGI receive/send), with a recording observer: what each request is answered,
and what observability is told."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from serving.lifecycle import Service
from serving.pipeline import Pipeline, Refusal, Ticket
from serving.pipeline.doors import Door
from serving.pipeline.head import RequestHead, read_head
from serving.pipeline.hooks import RequestSpan
from serving.settings import Settings
from tests.support.tiny_model import synthetic_images

T = TypeVar("T")
RAW = (b"content-type", b"application/octet-stream")


class Recorder:
    """A ``RequestObserver`` that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def span(self, door: Door, head: RequestHead, key: str) -> RequestSpan | None:
        self.calls.append(("span", door.template))
        return None

    def on_start(self) -> None:
        self.calls.append(("start",))

    def on_end(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        self.calls.append(("end", template, status))

    def on_refused(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        self.calls.append(("refused", template, status))

    def on_error(self, exc: BaseException) -> None:
        self.calls.append(("error", type(exc).__name__))


def ids(labels: Any, confidences: Any, version: str) -> list[str]:
    return [f"{version}:{label}" for label in labels]


def run_with(settings: Settings, scenario: Callable[[Pipeline, Recorder], Awaitable[T]]) -> T:
    async def main() -> T:
        service = Service(settings)
        recorder = Recorder()
        pipeline = Pipeline(service, ids, recorder)
        await service.start()
        try:
            return await scenario(pipeline, recorder)
        finally:
            await service.stop()

    return asyncio.run(asyncio.wait_for(main(), timeout=30))


async def serve(pipeline: Pipeline, ticket: Ticket, body: bytes) -> list[dict[str, Any]]:
    """Serve ``ticket`` with ``body`` as one ASGI message; the messages sent back."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await pipeline.serve(ticket, receive, send)  # type: ignore[arg-type]
    return sent


def headers_of(start: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(start["headers"])


@pytest.fixture
def settings(tiny_model_repository: Path) -> Settings:
    return Settings(model_repository=tiny_model_repository, model_poll_interval_s=0)


def test_a_v1_request_is_admitted_once_then_served_with_its_ids(settings: Settings) -> None:
    pixels = (synthetic_images(2, seed=5) * 255).astype(np.uint8)

    async def scenario(pipeline: Pipeline, recorder: Recorder) -> Any:
        head = read_head([RAW, (b"content-length", b"1568"), (b"x-request-id", b"r-1")])
        ticket = pipeline.arrive("POST", "/v1/predict", head, time.monotonic())
        assert isinstance(ticket, Ticket)
        return ticket, await serve(pipeline, ticket, pixels.tobytes()), recorder.calls

    ticket, sent, calls = run_with(settings, scenario)
    assert ticket.request_id == "r-1"
    assert ticket.deadline == pytest.approx(ticket.arrived_at + 1.0)  # request_timeout_ms
    start, body = sent
    assert start["status"] == 200
    assert headers_of(start)[b"content-type"] == b"application/json"
    assert headers_of(start)[b"x-request-id"] == b"r-1"
    assert int(headers_of(start)[b"content-length"]) == len(body["body"])
    answer = json.loads(body["body"])
    labels = [p["label"] for p in answer["predictions"]]
    assert [p["prediction_id"] for p in answer["predictions"]] == [f"1:{x}" for x in labels]
    assert calls == [("start",), ("span", "/v1/predict"), ("end", "/v1/predict", 200)]


def test_refusals_come_from_the_headers_in_the_doors_shape(settings: Settings) -> None:
    async def scenario(pipeline: Pipeline, recorder: Recorder) -> Any:
        now = time.monotonic()
        bad_timeout = pipeline.arrive(
            "POST", "/v1/predict", read_head([(b"x-request-timeout-ms", b"soon")]), now
        )
        unknown_model = pipeline.arrive("POST", "/v2/models/other/infer", RequestHead(), now)
        unknown_version = pipeline.arrive(
            "POST", "/v2/models/mnist/versions/9/infer", RequestHead(), now
        )
        not_a_prediction = pipeline.arrive("GET", "/healthz", RequestHead(), now)
        pipeline.service.begin_drain()
        draining = pipeline.arrive("POST", "/v1/predict", RequestHead(), now)
        return [bad_timeout, unknown_model, unknown_version, draining], not_a_prediction, recorder

    refusals, not_a_prediction, recorder = run_with(settings, scenario)
    assert not_a_prediction.allowed  # the Litestar routes' access decision
    assert not_a_prediction.key_name == "anonymous"
    assert all(isinstance(r, Refusal) for r in refusals)
    bad_timeout, unknown_model, unknown_version, draining = refusals
    assert bad_timeout.answer.status == 400
    assert "X-Request-Timeout-Ms" in json.loads(bad_timeout.answer.body)["error"]["message"]
    assert unknown_model.answer.status == 404
    assert json.loads(unknown_model.answer.body) == {
        "error": "unknown model 'other': this server serves 'mnist'"
    }
    assert unknown_version.answer.status == 404
    assert draining.answer.status == 503
    assert (b"retry-after", b"1") in draining.answer.headers
    assert draining.close  # a draining service closes the connection after refusing
    assert not bad_timeout.close
    assert [c for c in recorder.calls if c[0] == "refused"] == [
        ("refused", "/v1/predict", 400),
        ("refused", "/v2/models/{name}/infer", 404),
        ("refused", "/v2/models/{name}/versions/{version}/infer", 404),
        ("refused", "/v1/predict", 503),
    ]


def test_a_bad_body_is_answered_by_its_codec_and_told_to_observability(
    settings: Settings,
) -> None:
    async def scenario(pipeline: Pipeline, recorder: Recorder) -> Any:
        ticket = pipeline.arrive("POST", "/v1/predict", read_head([RAW]), time.monotonic())
        assert isinstance(ticket, Ticket)
        v1 = await serve(pipeline, ticket, b"\x00" * 100)
        ticket = pipeline.arrive(
            "POST",
            "/v2/models/mnist/infer",
            read_head([(b"content-type", b"application/json")]),
            time.monotonic(),
        )
        assert isinstance(ticket, Ticket)
        v2 = await serve(pipeline, ticket, b'{"inputs": []}')
        return v1, v2, recorder.calls

    v1, v2, calls = run_with(settings, scenario)
    assert v1[0]["status"] == 422
    assert json.loads(v1[1]["body"])["error"]["status"] == 422
    assert v2[0]["status"] == 400
    assert isinstance(json.loads(v2[1]["body"])["error"], str)
    assert ("error", "InvalidInputError") in calls
    assert ("end", "/v1/predict", 422) in calls
    assert ("end", "/v2/models/{name}/infer", 400) in calls


def test_oip_parameters_timeout_sets_the_deadline_from_arrival(settings: Settings) -> None:
    """Admission judged the default deadline (the timeout is in the body); the body's own
    deadline, counted from arrival, is the one the batcher keeps: already past -> 504."""
    body = json.dumps(
        {
            "inputs": [
                {"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.1] * 784}
            ],
            "parameters": {"timeout": 1},  # 1 microsecond
        }
    ).encode()

    async def scenario(pipeline: Pipeline, recorder: Recorder) -> Any:
        head = read_head([(b"content-type", b"application/json")])
        ticket = pipeline.arrive("POST", "/v2/models/mnist/infer", head, time.monotonic())
        assert isinstance(ticket, Ticket)
        return await serve(pipeline, ticket, body)

    start, answer = run_with(settings, scenario)
    assert start["status"] == 504, answer
    assert "deadline" in json.loads(answer["body"])["error"]


def test_an_idle_service_is_not_full_after_an_overload(settings: Settings) -> None:
    """Backpressure asks ``full()`` before reading a connection. After an overload the batch
    average still holds its slow batches (it falls only as batches run); an idle service
    judged by it held every connection for the sweep's wait. Nothing ahead: judged as
    admission judges a lone request, by the fastest idle batch."""

    async def scenario(pipeline: Pipeline, recorder: Recorder) -> tuple[bool, bool, float]:
        pixels = synthetic_images(1, seed=3)
        batcher = pipeline.service.batcher
        assert batcher is not None
        await batcher.submit(pixels, time.monotonic() + 60)  # one idle batch measured
        meter = batcher.throughput
        # An overload's batch: 3 s from the end of the one before, behind a backlog.
        meter.record(taken_at=0.0, finished_at=0.001, backlog=True)
        meter.record(taken_at=1.0, finished_at=3.0, backlog=False)
        idle = pipeline.full()
        busy = pipeline.full(pending=1)  # a request about to be read: the average applies
        return idle, busy, meter.wait_s(2, 32)

    idle, busy, average_wait = run_with(settings, scenario)
    assert average_wait > 1.0  # the average does hold the overload
    assert (idle, busy) == (False, True)
