"""The event loop's standing lag: seen when the loop stays behind, not after one slow step.

The rule is tested on a driven clock (exact lateness per tick). The idle and one-stall cases
used to run on the real loop and assert the lag stayed under 5 ms, which a descheduled test
process breaks; only the 'stays behind' case, a lower bound, still runs on a real loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import serving.transport.loop_lag as loop_lag
from serving.settings import Settings
from serving.transport.loop_lag import LoopLag
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images


class DrivenLoop:
    """The two things LoopLag uses of a loop and a clock, driven by the test: ``call_later``
    records the timer, :meth:`fire` runs it ``late_s`` after it was due. The rule (the minimum
    of the last samples) is tested on exact lateness, not on how a busy machine schedules."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[..., None], tuple[Any, ...]]] = []

    def monotonic(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Handle:
        self.timers.append((self.now + delay, callback, args))
        return Handle()

    def fire(self, late_s: float) -> None:
        (due, callback, args) = self.timers.pop(0)
        self.now = due + late_s
        callback(*args)


class Handle:
    def cancel(self) -> None:
        pass


@pytest.fixture
def driven(monkeypatch: pytest.MonkeyPatch) -> DrivenLoop:
    loop = DrivenLoop()
    monkeypatch.setattr(loop_lag, "time", SimpleNamespace(monotonic=loop.monotonic))
    monkeypatch.setattr(loop_lag, "asyncio", SimpleNamespace(get_running_loop=lambda: loop))
    return loop


def standing(driven: DrivenLoop, lateness: list[float]) -> list[float]:
    """The standing lag after each tick fired that late."""
    lag = LoopLag(interval_s=0.01, samples=5)
    lag.start()
    seen = []
    for late in lateness:
        driven.fire(late)
        seen.append(lag.standing_s)
    return seen


def test_an_idle_loop_has_no_standing_lag(driven: DrivenLoop) -> None:
    assert standing(driven, [0.0] * 10) == [0.0] * 10


def test_one_slow_iteration_is_not_a_standing_lag(driven: DrivenLoop) -> None:
    seen = standing(driven, [0.0] * 5 + [0.2] + [0.0] * 10)
    assert max(seen) == 0.0  # the minimum of the last five: one late tick never counts


def test_lag_counts_once_every_recent_sample_was_late_and_fades_likewise(
    driven: DrivenLoop,
) -> None:
    seen = standing(driven, [0.03, 0.05, 0.04, 0.04, 0.03, 0.06, 0.0, 0.05])
    # Nothing until five samples exist; then the smallest of the last five; one punctual tick
    # brings it to 0 at once (the backlog is gone).
    assert seen == pytest.approx([0.0, 0.0, 0.0, 0.0, 0.03, 0.03, 0.0, 0.0])


def test_stop_forgets_the_samples(driven: DrivenLoop) -> None:
    lag = LoopLag(interval_s=0.01, samples=2)
    lag.start()
    driven.fire(0.5)
    driven.fire(0.5)
    assert lag.standing_s == pytest.approx(0.5)
    lag.stop()
    assert lag.standing_s == 0.0
    lag.start()
    driven.timers.pop(0)  # the stopped one's timer (cancelled on a real loop)
    driven.fire(0.5)
    assert lag.standing_s == 0.0  # one sample of two: not yet a standing lag


# On a real event loop: a loop kept behind by its own work shows it. A lower bound only: each
# 40 ms of blocking work makes the next 1 ms timer at least ~39 ms late, and a busy machine
# only makes it later.
def _block(seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        pass


async def _sample(work: float, pause: float, total_s: float) -> float:
    """Run ``work`` s of blocking callbacks ``pause`` s apart for ``total_s``: the largest
    standing lag seen."""
    lag = LoopLag()
    lag.start()
    worst = 0.0
    stop = time.monotonic() + total_s
    try:
        while time.monotonic() < stop:
            if work:
                _block(work)
            await asyncio.sleep(pause)
            worst = max(worst, lag.standing_s)
    finally:
        lag.stop()
    return worst


def test_a_loop_that_stays_behind_shows_its_lag() -> None:
    # 40 ms of work per 1 ms pause: every timer fires tens of ms late, sample after sample.
    assert asyncio.run(_sample(0.04, 0.001, 0.6)) > 0.02


def test_the_standing_lag_counts_in_the_estimated_wait(
    tiny_model_repository: Path, app_client: AppStarter
) -> None:
    """A request the loop is 0.9 s behind on cannot meet a 1 s deadline (75 % headroom)."""
    settings = Settings(model_repository=tiny_model_repository, request_timeout_ms=1000)
    body = {"instances": synthetic_images(1).tolist()}
    with app_client(settings) as client:
        lag = client.served.pipeline.lag
        assert isinstance(lag, LoopLag)
        lag.stop()  # hold the value still: the monitor would resample it
        lag.standing_s = 0.9
        refused = client.post("/v1/predict", json=body)
        lag.standing_s = 0.01
        served = client.post("/v1/predict", json=body)
        metrics = client.get("/metrics").text
    assert refused.status_code == 503, refused.text
    assert "overloaded" in refused.json()["error"]["message"]
    assert served.status_code == 200, served.text
    assert 'inference_rejected_requests_total{reason="overloaded"} 1.0' in metrics
    assert "inference_event_loop_lag_seconds " in metrics
