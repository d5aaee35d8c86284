"""The event loop's standing lag: seen when the loop stays behind, not after one slow step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from serving.settings import Settings
from serving.transport.loop_lag import LoopLag
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images


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


def test_an_idle_loop_has_no_standing_lag() -> None:
    assert asyncio.run(_sample(0.0, 0.01, 0.3)) < 0.005


def test_one_slow_iteration_is_not_a_standing_lag() -> None:
    async def one_stall() -> float:
        lag = LoopLag()
        lag.start()
        await asyncio.sleep(0.1)
        _block(0.2)
        worst = 0.0
        for _ in range(20):
            await asyncio.sleep(0.01)
            worst = max(worst, lag.standing_s)
        lag.stop()
        return worst

    assert asyncio.run(one_stall()) < 0.005


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
