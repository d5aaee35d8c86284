"""Rollouts on real server processes under load, with real tiny ONNX models: a version published
beside the served one is judged while a load thread keeps sending, and every request of the run
must succeed.

- a broken candidate (two output classes swapped) in shadow mode is rolled back, with 1 and 2
  workers, and no client ever gets one of its answers;
- a good one (the int8 quantisation of the same weights) is promoted, and both workers agree;
- a broken canary answers at most its share of the requests before it is rolled back;
- a restart during a rollout resumes it (the state file kept), or reverts it when its state is
  older than the resume window, and says which.

Every wait polls a state (GET /v1/rollout, the answers' versions) with a bound; none sleeps to
synchronise.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ServerStarter
from tests.support.tiny_model import synthetic_images, write_model_version

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: The latency rule is off: it judges timings, which a shared 2-core machine makes noisy (its
#: statistics are tested in test_judge.py). min_samples is small so that a run takes seconds.
POLICY = """
mode = "{mode}"
min_samples = {min_samples}
canary_share = {share}
evaluation_interval_s = 0.5
[rules.latency]
enabled = false
"""
#: The tiny model's two most frequent classes on this traffic (7 and 8: ~36 % of the rows), so
#: that swapping them changes many answers, as a real swap of two digits would.
SWAP = (7, 8)
RAW = (synthetic_images(1024, seed=3) * 255).round().astype(np.uint8)
OCTETS = {"content-type": "application/octet-stream"}
WAIT_S = 180.0  # a bound for a loaded 2-core machine, not a target
MAX_REQUESTS = 200_000  # the load thread's bound


def repository(tmp_path: Path, mode: str, *, min_samples: int = 300, share: float = 0.1) -> Path:
    root = tmp_path / "models"
    write_model_version(root, version=1)
    (root / "mnist" / "rollout.toml").write_text(
        POLICY.format(mode=mode, min_samples=min_samples, share=share)
    )
    return root


def publish(root: Path, version: int, **kind: Any) -> None:
    """Write the version under a temporary name, then rename it: the service never sees a
    half-written version (docs/rollout.md)."""
    write_model_version(root, version=version, folder=f".staging-{version}", **kind)
    (root / "mnist" / f".staging-{version}").rename(root / "mnist" / str(version))


def server_env(root: Path, workers: int = 1, **extra: str) -> dict[str, str]:
    return {
        "SERVING_MODEL_REPOSITORY": str(root),
        "SERVING_MODEL_POLL_INTERVAL_S": "0.5",
        "SERVING_WORKERS": str(workers),
        "SERVING_LOG_LEVEL": "info",
        **extra,
    }


class Load:
    """A thread sending one-digit predictions (each with a client id of 500) until stopped;
    counts statuses and which version answered."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.statuses: collections.Counter[int] = collections.Counter()
        self.versions: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self) -> None:
        rows = itertools.cycle(range(len(RAW)))
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            for n in range(MAX_REQUESTS):
                if self._stop.is_set():
                    return
                row = next(rows)
                headers = {**OCTETS, "x-client-id": f"client-{n % 500}"}
                response = client.post("/v1/predict", content=RAW[row].tobytes(), headers=headers)
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.versions[response.json()["model"]["version"]] += 1

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@contextmanager
def running(serving_server: ServerStarter, env: dict[str, str]) -> Iterator[str]:
    with serving_server(env, ready_timeout_s=60) as server:
        yield server.base_url


def rollout(base_url: str) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(f"{base_url}/v1/rollout", timeout=30).json()
    return report


def wait_for(base_url: str, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    report = rollout(base_url)
    while not check(report):
        if time.monotonic() > deadline:
            pytest.fail(f"never {what}: {report}")
        time.sleep(0.05)  # a polling pace, not a synchronisation
        report = rollout(base_url)
    return report


def wait_answers(base_url: str, version: str, in_a_row: int = 40) -> None:
    """Until ``in_a_row`` requests, each on a new connection (so both workers answer some),
    were answered by ``version``: every worker applied the decision."""
    deadline = time.monotonic() + WAIT_S
    streak = 0
    while streak < in_a_row:
        if time.monotonic() > deadline:
            pytest.fail(f"{version} never answered {in_a_row} requests in a row")
        response = httpx.post(
            f"{base_url}/v1/predict", content=RAW[0].tobytes(), headers=OCTETS, timeout=30
        )
        assert response.status_code == 200
        streak = streak + 1 if response.json()["model"]["version"] == version else 0


def actions(report: dict[str, Any]) -> collections.Counter[str]:
    return collections.Counter(d["action"] for d in report["history"])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_broken_shadow_candidate_is_rolled_back_unseen_under_load(
    serving_server: ServerStarter, tmp_path: Path, workers: int
) -> None:
    root = repository(tmp_path, "shadow")
    with running(serving_server, server_env(root, workers)) as url, Load(url) as load:
        assert rollout(url)["stable"] == 1
        publish(root, 2, swap=SWAP)
        wait_for(url, lambda r: r["running"], "started")
        report = wait_for(url, lambda r: not r["running"], "decided")
        index = httpx.post(f"{url}/v2/repository/index", timeout=30)
        wait_answers(url, "1")
    assert actions(report)["rolled_back"] == 1  # one decision, whatever the workers
    decision = report["history"][0]
    assert (decision["action"], decision["by"]) == ("rolled_back", "judge")
    assert "agreement" in decision["reason"]
    assert "rolled back by the judge" in report["refused"]["2"]["reason"]
    assert index.status_code == 403  # the admin API is off without keys (the index: test_wiring)
    assert set(load.statuses) == {200}  # 0 failed requests across the transition
    assert set(load.versions) == {"1"}  # no client ever got the candidate's answer


def test_a_good_shadow_candidate_is_promoted_and_both_workers_agree(
    serving_server: ServerStarter, tmp_path: Path
) -> None:
    root = repository(tmp_path, "shadow")
    with running(serving_server, server_env(root, workers=2)) as url, Load(url) as load:
        publish(root, 2, int8_twin=True)
        wait_for(url, lambda r: r["running"], "started")
        report = wait_for(url, lambda r: not r["running"], "decided")
        wait_answers(url, "2")  # both workers serve the promoted version
        reports = [rollout(url) for _ in range(6)]  # new connections: either worker answers
    assert actions(report)["promoted"] == 1
    assert report["stable"] == 2
    assert report["verdict"]["compared"] >= 300
    assert all(r["history"] == report["history"] for r in reports)  # one state for both
    assert set(load.statuses) == {200}
    assert load.versions["1"] > 0
    assert load.versions["2"] > 0


def test_a_broken_canary_answers_at_most_its_share_before_it_is_rolled_back(
    serving_server: ServerStarter, tmp_path: Path
) -> None:
    share = 0.1
    root = repository(tmp_path, "canary", share=share)
    with running(serving_server, server_env(root)) as url, Load(url) as load:
        publish(root, 2, swap=SWAP)
        wait_for(url, lambda r: r["running"], "started")
        report = wait_for(url, lambda r: not r["running"], "decided")
        wait_answers(url, "1")
    assert actions(report)["rolled_back"] == 1
    assert set(load.statuses) == {200}
    # The candidate answered about `share` of the requests while it ran (sticky per client id,
    # 500 ids), and none after: bounded by the share over the whole run, with 4 sigma of room
    # for the draw of which clients are in the share.
    answered, sent = load.versions["2"], load.sent
    assert 0 < answered <= sent * share + 4 * math.sqrt(sent * share * (1 - share)) + 50


def test_a_restart_resumes_a_rollout_or_reverts_it_and_says_which(
    serving_server: ServerStarter, tmp_path: Path
) -> None:
    # min_samples far away: the rollout is still running when the service restarts.
    root = repository(tmp_path, "shadow", min_samples=1_000_000)
    store = tmp_path / "state" / "rollout.sqlite3"
    env = server_env(root, SERVING_ROLLOUT_STORE=str(store))
    with running(serving_server, env) as url, Load(url):
        publish(root, 2, seed=0)
        before = wait_for(url, lambda r: r["running"] and r["compared"] >= 100, "recording")

    with running(serving_server, env) as url, Load(url) as load:
        resumed = wait_for(url, lambda r: r["history"][0]["action"] != "started", "restarted")
        # Recording goes on: evidence beyond what the restart found (the first service's last
        # flush may land after `before`), from this load's answered requests.
        resumed_later = wait_for(
            url, lambda r: r["compared"] > resumed["compared"] and load.sent > 0, "recording"
        )
    assert resumed["history"][0]["action"] == "resumed"
    assert resumed["history"][0]["by"] == "restart"
    assert resumed["compared"] >= before["compared"]  # its evidence came along
    assert (resumed_later["stable"], resumed_later["candidate"]) == (1, 2)
    assert set(load.statuses) == {200}

    # Beyond the resume window: stable alone, and the candidate starts over with no evidence.
    stale = {**env, "SERVING_ROLLOUT_RESUME_WINDOW_S": "0.001"}
    with running(serving_server, stale) as url:
        reverted = rollout(url)
    assert [d["action"] for d in reverted["history"][:2]] == ["started", "reverted"]
    assert "resume window" in reverted["history"][1]["reason"]
    assert reverted["compared"] == 0
