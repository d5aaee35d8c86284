"""``python -m benchmarks.costs`` runs every case end to end on the real app (the tiny model) and
writes the cost table: one row per stage and feature, a number for each (no timing judged)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from benchmarks import costs, inprocess

#: Every stage of the pipeline has rows (the table's contract with docs/performance.md).
STAGES = {"arrive", "read", "decode", "submit/batch", "result", "observe", "encode", "send",
          "whole request"}  # fmt: skip


def test_every_case_runs_and_the_table_is_written(
    tiny_model_repository: Path, mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    rows = tmp_path / "costs.json"
    args = ["--models", str(tiny_model_repository), "--mnist-dir", str(mnist_dir),
            "--target-s", "0.001", "--repeat", "1", "--out", str(out),
            "--json", str(rows)]  # fmt: skip
    assert costs.main(args) == 0
    payload = json.loads(rows.read_text())
    found = payload["costs"]
    assert {row["stage"] for row in found} == STAGES
    assert len(found) >= 40
    for row in found:
        assert math.isfinite(row["us"]), row
        assert row["us"] >= 0, row
        assert row["number"] >= 1, row
    names = {row["name"] for row in payload["derived"]}
    assert any(name.startswith("tracing at the default ratio") for name in names)
    assert any(name.startswith("sum of the v1 JSON stages") for name in names)
    (written,) = out.glob("*-costs.md")
    text = written.read_text()
    assert text == payload["markdown"]
    assert "| decode | gRPC raw_input_contents FP32" in text
    assert "| arrive | access, rate-limited key (the 429 decision)" in text


def test_only_selects_cases(tiny_model_repository: Path, mnist_dir: Path, tmp_path: Path) -> None:
    rows = tmp_path / "costs.json"
    args = ["--models", str(tiny_model_repository), "--mnist-dir", str(mnist_dir),
            "--target-s", "0.001", "--repeat", "1", "--only", "decode:", "--no-write",
            "--json", str(rows)]  # fmt: skip
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
