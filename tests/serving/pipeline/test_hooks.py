"""What observability is told about a prediction, in what order: the hooks' contract as the
pipeline calls them (a sampled request's span is entered, told its status, then exited; the
end is reported once, with the status the client got, 500 if the door failed first), and
``NullRequestObserver``, the default when observability is off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from serving.lifecycle import Service
from serving.pipeline import Pipeline, Ticket
from serving.pipeline.doors import V1_DOOR, Door
from serving.pipeline.head import RequestHead, read_head
from serving.pipeline.hooks import NullRequestObserver, RequestObserver, RequestSpan
from serving.settings import Settings
from tests.support.tiny_model import synthetic_images

T = TypeVar("T")


class Span:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def __enter__(self) -> object:
        self.calls.append(("span enter",))
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append(("span exit", exc[0]))

    def finish(self, status: int) -> None:
        self.calls.append(("span finish", status))


class Traced:
    """A RequestObserver that samples every request and writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def span(self, door: Door, head: RequestHead, key: str) -> RequestSpan | None:
        self.calls.append(("span", door.template, head.request_id, key))
        return Span(self.calls)

    def on_start(self) -> None:
        self.calls.append(("start",))

    def on_end(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        assert seconds >= 0
        self.calls.append(("end", template, status, key, rid, protocol))

    def on_refused(
        self, template: str, status: int, seconds: float, key: str, rid: str, protocol: str
    ) -> None:
        self.calls.append(("refused", template, status))

    def on_error(self, exc: BaseException) -> None:
        self.calls.append(("error", type(exc).__name__))


def ids(labels: Any, confidences: Any, version: str) -> list[str]:
    return [str(label) for label in labels]


def run(
    settings: Settings,
    observer: RequestObserver | None,
    scenario: Callable[[Pipeline], Awaitable[T]],
) -> T:
    async def main() -> T:
        service = Service(settings)
        pipeline = Pipeline(service, ids, observer)
        await service.start()
        try:
            return await scenario(pipeline)
        finally:
            await service.stop()

    return asyncio.run(asyncio.wait_for(main(), timeout=60))


async def serve(pipeline: Pipeline, ticket: Ticket, body: bytes) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await pipeline.serve(ticket, receive, send)  # type: ignore[arg-type]
    status: int = sent[0]["status"]
    return status


def arrive(pipeline: Pipeline, rid: bytes = b"r-1") -> Ticket:
    head = read_head([(b"content-type", b"application/octet-stream"), (b"x-request-id", rid)])
    ticket = pipeline.arrive("POST", "/v1/predict", head, time.monotonic())
    assert isinstance(ticket, Ticket)
    return ticket


@pytest.fixture
def settings(tiny_model_repository: Path) -> Settings:
    return Settings(model_repository=tiny_model_repository, model_poll_interval_s=0)


def test_without_an_observer_the_pipeline_reports_to_the_null_one(settings: Settings) -> None:
    body = (synthetic_images(1) * 255).astype("uint8").tobytes()

    async def scenario(pipeline: Pipeline) -> tuple[RequestObserver, int]:
        return pipeline.observer, await serve(pipeline, arrive(pipeline), body)

    observer, status = run(settings, None, scenario)
    assert isinstance(observer, NullRequestObserver)
    assert status == 200
    assert NullRequestObserver().span(V1_DOOR, RequestHead(), "anonymous") is None


def test_a_served_request_is_started_traced_finished_and_ended_in_that_order(
    settings: Settings,
) -> None:
    traced = Traced()
    good = (synthetic_images(1) * 255).astype("uint8").tobytes()

    async def scenario(pipeline: Pipeline) -> list[int]:
        return [
            await serve(pipeline, arrive(pipeline, b"ok"), good),
            await serve(pipeline, arrive(pipeline, b"short"), good[:-1]),  # 783 bytes: 422
        ]

    assert run(settings, traced, scenario) == [200, 422]
    ok = ("/v1/predict", 200, "anonymous", "ok", "http")
    short = ("/v1/predict", 422, "anonymous", "short", "http")
    assert traced.calls == [
        ("start",), ("span", "/v1/predict", b"ok", "anonymous"), ("span enter",),
        ("span finish", 200), ("span exit", None), ("end", *ok),
        ("start",), ("span", "/v1/predict", b"short", "anonymous"), ("span enter",),
        ("error", "InvalidInputError"), ("span finish", 422), ("span exit", None),
        ("end", *short),
    ]  # fmt: skip


def test_a_door_that_fails_before_it_answers_is_ended_as_a_500(settings: Settings) -> None:
    """The end is reported even when the door raises: with 500, and the span sees the error."""
    traced = Traced()

    async def scenario(pipeline: Pipeline) -> None:
        ticket = arrive(pipeline, b"broken")
        with pytest.raises(RuntimeError, match="a door bug"), pipeline.observe(ticket):
            raise RuntimeError("a door bug")

    run(settings, traced, scenario)
    assert traced.calls[-3:] == [
        ("span finish", 500),
        ("span exit", RuntimeError),
        ("end", "/v1/predict", 500, "anonymous", "broken", "http"),
    ]
