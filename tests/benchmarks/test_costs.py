"""``python -m benchmarks.costs`` runs every case end to end on the real app (the tiny model) and
writes the cost table: one row per stage and feature, a number for each (no timing judged).
The rollout rows refuse to run on a fixture that would not exercise their path."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from benchmarks import costs, inprocess
from serving.pipeline.head import read_head

#: Every stage of the pipeline has rows (the table's contract with docs/performance.md), and
#: the rollout's touch points and the idle background theirs.
STAGES = {"arrive", "read", "decode", "submit/batch", "result", "observe", "encode", "send",
          "whole request", "rollout", "idle"}  # fmt: skip
#: The rollout group: each touch point with no rollout, and with one running.
ROLLOUT_ROWS = 15


def test_every_case_runs_and_the_table_is_written(
    tiny_model_repository: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    rows = tmp_path / "costs.json"
    args = ["--models", str(tiny_model_repository), "--mnist-dir", str(mnist_dir),
            "--target-s", "0.001", "--repeat", "1", "--out", str(out),
            "--json", str(rows), "--idle-s", "0.5"]  # fmt: skip
    assert costs.main(args) == 0
    payload = json.loads(rows.read_text())
    found = payload["costs"]
    assert {row["stage"] for row in found} == STAGES
    assert len(found) >= 40
    assert sum(row["stage"] == "rollout" for row in found) == ROLLOUT_ROWS
    assert sum(row["stage"] == "idle" for row in found) == 2
    for row in found:
        assert math.isfinite(row["us"]), row
        assert row["us"] >= 0, row
        assert row["number"] >= 1, row
    names = {row["name"] for row in payload["derived"]}
    assert any(name.startswith("tracing at the default ratio") for name in names)
    assert any(name.startswith("sum of the v1 JSON stages") for name in names)
    # Every difference of the rollout group found both of its rows.
    assert {name for name, _, _ in costs.ROLLOUT_DIFFERENCES} <= names
    idle = payload["idle_cpu"]
    assert len(idle) == len(costs.IDLE_SERVERS) + 1  # and the lag probe, for scale
    for row in idle:
        assert math.isfinite(row["ms_per_s"]), row
        assert row["ms_per_s"] >= 0, row
        assert row["seconds"] >= 0.5, row
    (written,) = out.glob("*-costs.md")
    text = written.read_text()
    assert text == payload["markdown"]
    assert "| decode | gRPC raw_input_contents FP32" in text
    assert "| arrive | access, rate-limited key (the 429 decision)" in text
    assert "| rollout | admission, canary running: X-Client-ID hashed" in text
    assert "| idle worker, default settings | |" in text


def test_only_selects_cases(tiny_model_repository: Path, mnist_dir: Path, tmp_path: Path) -> None:
    rows = tmp_path / "costs.json"
    args = ["--models", str(tiny_model_repository), "--mnist-dir", str(mnist_dir),
            "--target-s", "0.001", "--repeat", "1", "--only", "decode:", "--no-write",
            "--json", str(rows), "--idle-s", "0"]  # fmt: skip
    assert costs.main(args) == 0
    found = json.loads(rows.read_text())["costs"]
    assert {row["stage"] for row in found} == {"decode"}
    assert len(found) == 8  # one per codec and encoding, and the ceilings' for scale


def test_inprocess_driver_still_answers_every_request(
    tiny_model_repository: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks.inprocess (callgrind's driver) shares the lifespan helper with the costs."""
    monkeypatch.setenv("SERVING_MODEL_REPOSITORY", str(tiny_model_repository))
    result = asyncio.run(inprocess.drive(20, 4, 10, str(mnist_dir)))
    assert result["statuses"] == {"200": 20}
    assert result["rows"] == 20


def rollout_only(repository: Path, mnist_dir: Path, only: str) -> list[str]:
    return ["--models", str(repository), "--mnist-dir", str(mnist_dir), "--target-s", "0.001",
            "--repeat", "1", "--only", only, "--no-write", "--idle-s", "0"]  # fmt: skip


def test_a_rollout_fixture_without_its_rollout_fails_the_table(
    tiny_model_repository: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout.toml that starts no rollout (mode replace): the canary and shadow rows would
    price the no-rollout path twice, so the table stops before them."""
    monkeypatch.setattr(costs, "ROLLOUT_POLICY", 'mode = "replace"  # {mode} ignored\n')
    with pytest.raises(RuntimeError, match="the canary app runs no canary rollout"):
        costs.main(rollout_only(tiny_model_repository, mnist_dir, "rollout: admission"))


def test_a_rollout_that_ends_during_the_rows_fails_the_table(
    tiny_model_repository: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixtures are checked again after the rows: a canary whose route went away while
    they ran (as a promotion would take it) fails the table instead of mislabelling rows."""
    cases = costs.rollout_cases

    def and_the_route_goes(f: costs.Fixtures, r: costs.Rollouts) -> list[costs.Case]:
        versions = r.canary.service.versions_set

        def end() -> None:
            versions.route = None

        return [*cases(f, r), costs.Case(costs.ROLLOUT, "the route goes", fn=end, number=1)]

    monkeypatch.setattr(costs, "rollout_cases", and_the_route_goes)
    with pytest.raises(RuntimeError, match="the canary app has no route"):
        costs.main(rollout_only(tiny_model_repository, mnist_dir, "rollout:"))


def test_read_head_before_the_rollout_lacks_only_the_client_id() -> None:
    before = costs.read_head_before_rollout()
    headers = [*costs.client_headers(b"application/json", 10, key=True), (b"x-client-id", b"al")]
    now, then = read_head(headers), before(headers)
    assert (now.client_id, then.client_id) == (b"al", None)
    now.client_id = None
    assert now == then  # every other field read as read_head reads it


def test_read_head_before_the_rollout_refuses_a_changed_branch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If read_head's X-Client-ID branch is rewritten, the row would price nothing: it stops."""
    monkeypatch.setattr(costs, "CLIENT_ID_BRANCH", 'elif name == b"x-client":\n')
    with pytest.raises(RuntimeError, match="X-Client-ID branch changed"):
        costs.read_head_before_rollout()
