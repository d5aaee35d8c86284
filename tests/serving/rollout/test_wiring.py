"""The rollout wired into the app, in-process with real tiny ONNX models: what is served, who
answers, what is recorded, what labels score, the report, the index, and the admin calls.

The end-to-end runs (real server processes, load across each transition) are in test_e2e.py."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.feedback.ids import ID2_CHARS, ID_CHARS
from serving.settings import Settings
from serving.testing import AppClient
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images, write_model_version

#: Judged every 0.05 s; the latency rule is off because it judges timings, which a shared
#: machine makes noisy (its statistics are tested in test_judge.py).
POLICY = """
mode = "{mode}"
min_samples = {min_samples}
canary_share = 0.5
evaluation_interval_s = 0.05
[rules.latency]
enabled = false
"""
RAW = (synthetic_images(512, seed=3) * 255).round().astype(np.uint8)
_sent = itertools.count()
OCTETS = {"content-type": "application/octet-stream"}
WAIT = 2000  # polls of 10 ms at most: a bound, not a target


def repository(tmp_path: Path, mode: str, *, min_samples: int = 100_000, **v2: Any) -> Path:
    root = tmp_path / "models"
    write_model_version(root, version=1)
    write_model_version(root, version=2, **v2)
    (root / "mnist" / "rollout.toml").write_text(POLICY.format(mode=mode, min_samples=min_samples))
    return root


def predict(client: AppClient, rows: int = 8, client_id: str | None = None) -> dict[str, Any]:
    headers = dict(OCTETS)
    if client_id is not None:
        headers["x-client-id"] = client_id
    start = next(_sent) * rows % (len(RAW) - rows)  # different digits each time
    body = RAW[start : start + rows].tobytes()
    response = client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wait_for(client: AppClient, check: Any, traffic: bool = True) -> dict[str, Any]:
    """Poll GET /v1/rollout (sending traffic between polls) until ``check(report)``."""
    for _ in range(WAIT):
        report: dict[str, Any] = client.get("/v1/rollout").json()
        if check(report):
            return report
        if traffic:
            predict(client)
        else:
            time.sleep(0.01)
    pytest.fail(f"the rollout never reached the state: {report}")


def wait_served(client: AppClient, versions: list[str]) -> None:
    """Poll until this worker applied the decision (the report reads the shared store first)."""
    for _ in range(WAIT):
        if client.service.versions() == versions:
            return
        client.get("/healthz")  # lets the app's event loop run its tasks meanwhile
        time.sleep(0.01)
    pytest.fail(f"served {client.service.versions()}, never {versions}")


def test_replace_mode_serves_the_newest_as_before(app_client: AppStarter, tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model_version(root, version=1)
    write_model_version(root, version=2, seed=1)
    with app_client(Settings(model_repository=root)) as client:
        assert predict(client)["model"]["version"] == "2"
        assert client.service.versions() == ["2"]
        assert client.service.versions_set.route is None
        report = client.get("/v1/rollout").json()
        assert (report["running"], report["mode"], report["stable"]) == (False, "replace", 2)


def test_shadow_answers_with_stable_and_records_the_candidate(
    app_client: AppStarter, tmp_path: Path
) -> None:
    root = repository(tmp_path, "shadow")
    with app_client(Settings(model_repository=root)) as client:
        assert client.service.versions() == ["2", "1"]  # both loaded, stable answers
        report = client.get("/v1/rollout").json()
        assert (report["running"], report["stable"], report["candidate"]) == (True, 1, 2)
        answers = [predict(client) for _ in range(20)]
        assert {a["model"]["version"] for a in answers} == {"1"}
        ids = [p["prediction_id"] for a in answers for p in a["predictions"]]
        assert {len(i) for i in ids} == {ID2_CHARS}  # every batch was shadowed: both labels
        report = wait_for(client, lambda r: r["compared"] >= 160, traffic=False)
        pairs = report["evidence"]["pairs"]
        assert pairs["rows"] >= 160
        assert pairs["agreement"] == 1.0  # the same weights (seed 0): a perfect twin

        # A label for a format 2 id scores both versions.
        feedback = [{"prediction_id": i, "label": 3} for i in ids[:50]]
        assert client.post("/v1/feedback", json={"feedback": feedback}).json()["accepted"] == 50
        report = wait_for(client, lambda r: r["evidence"]["pairs"]["labelled"] >= 50)
        assert (
            report["evidence"]["stable"]["labelled"] == report["evidence"]["candidate"]["labelled"]
        )
        quality = client.get("/v1/quality", params={"version": 1}).json()
        assert quality["labelled"] == 50
        assert quality["model"]["version"] == "1"
        assert client.get("/v1/quality", params={"version": 2}).json()["labelled"] == 0


def test_a_broken_shadow_candidate_is_rolled_back_and_refused_in_the_index(
    app_client: AppStarter, tmp_path: Path
) -> None:
    root = repository(tmp_path, "shadow", min_samples=200, swap=(7, 8))
    with app_client(Settings(model_repository=root)) as client:
        report = wait_for(client, lambda r: not r["running"])
        assert report["history"][0]["action"] == "rolled_back"
        assert "agreement" in report["history"][0]["reason"]
        wait_served(client, ["1"])
        # The admin API is off without a keys file: the index is read through the service (the
        # admin test below reads it over HTTP).
        rows = {v: (state, why) for v, state, why in client.service.versions_set.index()}
        assert rows[1] == ("READY", "")
        assert rows[2][0] == "UNAVAILABLE"
        assert "rolled back by the judge" in rows[2][1]
        assert {predict(client)["model"]["version"] for _ in range(5)} == {"1"}
        ids = [p["prediction_id"] for p in predict(client)["predictions"]]
        assert {len(i) for i in ids} == {ID_CHARS}  # no rollout: format 1 as before


def test_a_good_shadow_candidate_is_promoted(app_client: AppStarter, tmp_path: Path) -> None:
    root = repository(tmp_path, "shadow", min_samples=200, int8_twin=True)
    with app_client(Settings(model_repository=root)) as client:
        report = wait_for(client, lambda r: not r["running"])
        assert report["history"][0]["action"] == "promoted"
        assert report["stable"] == 2
        wait_served(client, ["2"])
        assert predict(client)["model"]["version"] == "2"


def test_a_canary_is_sticky_per_client_and_answers_its_share(
    app_client: AppStarter, tmp_path: Path
) -> None:
    root = repository(tmp_path, "canary")  # share 0.5, never decides (min_samples 100,000)
    with app_client(Settings(model_repository=root)) as client:
        versions = {
            name: {predict(client, 1, name)["model"]["version"] for _ in range(3)}
            for name in (f"client-{i}" for i in range(40))
        }
        assert all(len(seen) == 1 for seen in versions.values())  # sticky
        answered = [seen.pop() for seen in versions.values()]
        assert set(answered) == {"1", "2"}  # both answer some clients
        # The canary's rows are paired with stable's (stable computes them behind it).
        report = wait_for(client, lambda r: r["evidence"] and r["evidence"]["pairs"]["rows"] > 0)
        assert report["share"] == 0.5


def test_admin_rollback_refuses_the_candidate(app_client: AppStarter, tmp_path: Path) -> None:
    root = repository(tmp_path, "shadow")
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "ops"\nkey = "ops-key-0123456789"\nscopes = ["admin"]\n')
    settings = Settings(model_repository=root, keys_file=keys)
    with app_client(settings) as client:
        body = {"reason": "a customer complained"}
        assert client.post("/v1/rollout/rollback", json=body).status_code == 401
        admin = {"authorization": "Bearer ops-key-0123456789"}
        response = client.post("/v1/rollout/rollback", json=body, headers=admin)
        assert response.status_code == 200, response.text
        report = response.json()
        assert not report["running"]
        assert report["history"][0]["by"] == "admin"
        assert "a customer complained" in report["refused"]["2"]["reason"]
        assert client.service.versions() == ["1"]
        index = client.post("/v2/repository/index", headers=admin).json()
        assert {"name": "mnist", "version": "2", "state": "UNAVAILABLE"}.items() <= index[0].items()
        assert "a customer complained" in index[0]["reason"]
        again = client.post("/v1/rollout/promote", json=body, headers=admin)
        assert again.status_code == 409


def test_a_failing_shadow_candidate_never_fails_an_answer(
    app_client: AppStarter, tmp_path: Path
) -> None:
    """The candidate raises (onnxruntime itself) on rows whose first pixel is 255: stable
    answers every one of them, and the errors are the candidate's evidence."""
    root = repository(tmp_path, "shadow", min_samples=200, poison=True)
    poisoned = RAW[:8].copy()
    poisoned[:, 0] = 255
    with app_client(Settings(model_repository=root)) as client:
        for _ in range(40):
            response = client.post("/v1/predict", content=poisoned.tobytes(), headers=OCTETS)
            assert response.status_code == 200
            assert response.json()["model"]["version"] == "1"
        report = wait_for(client, lambda r: not r["running"], traffic=False)
    assert report["history"][0]["action"] == "rolled_back"
    assert "errors" in report["history"][0]["reason"]
