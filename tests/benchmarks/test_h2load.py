"""The overload benchmark's generator against a real server: every request is accounted for, by
status, latency, timeout or error, in both shapes of load."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks import h2load
from tests.support.server import serving_process
from tests.support.tiny_model import synthetic_images

pytestmark = pytest.mark.e2e

HEADERS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def predict_url(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    log = tmp_path_factory.mktemp("h2load") / "server.log"
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}
    with serving_process(env, log) as server:
        yield server.base_url + "/v1/predict"


def body() -> bytes:
    return (synthetic_images(1, seed=2) * 255).astype("uint8").tobytes()


def test_new_connections_keep_their_schedule_and_log_every_answer(predict_url: str) -> None:
    run = h2load.new_connections(predict_url, body(), 100, 1.0, HEADERS, None)
    assert run.scheduled == 100
    assert run.started == 100
    assert (run.timeouts, run.errors) == (0, 0)
    assert Counter(o.status for o in run.outcomes) == {200: 100}
    assert all(0 < o.latency_s < h2load.TIMEOUT_S for o in run.outcomes)
    assert 0.9 < run.elapsed_s < 5.0  # the schedule spans 1 s, whatever the answers take


def test_keep_alive_clients_send_at_their_rate(predict_url: str) -> None:
    run = h2load.keep_alive(predict_url, body(), 40, 1.0, HEADERS, None, clients=4)
    assert run.scheduled == 40
    assert Counter(o.status for o in run.outcomes)[200] == run.started
    assert 30 <= run.started <= 44


def test_refusals_are_logged_with_their_status(predict_url: str) -> None:
    served = h2load.closed_loop(predict_url, body(), 1, 3, HEADERS, None, new_connections=True)
    assert Counter(o.status for o in served.outcomes) == {200: 3}  # the batch time is measured
    # A deadline no batch fits: refused at arrival by the protocol (400: no retry can help).
    refused = {**HEADERS, "X-Request-Timeout-Ms": "0.0001"}
    run = h2load.closed_loop(predict_url, body(), 2, 20, refused, None, new_connections=True)
    assert Counter(o.status for o in run.outcomes) == {400: 20}
