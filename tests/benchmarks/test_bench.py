"""``python -m benchmarks`` end to end at a tiny scale, on the pieces issues 24, 25 and 28 added:
the transport ceiling (1 and 2 workers), gRPC ModelInfer (the service and the gRPC ceiling)
through h2load beside HTTP v2 binary through the same generator, the keys on/off A/B; and the
report's targets. Real servers (the
tiny model), real wrk and h2load; no timing is judged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import benchmarks.__main__ as bench
from benchmarks import report

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHOSEN = (report.TRANSPORT, report.TRANSPORT_2W, report.V2_BINARY_H2LOAD, report.GRPC,
          report.GRPC_ONE_CONNECTION, report.GRPC_CEILING)  # fmt: skip


def test_new_configurations_and_the_keys_ab_run_and_report(
    tiny_model_repository: Path, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unpinned and short: the shapes of the runs are under test here, not their numbers.
    monkeypatch.setattr(bench, "SERVER_CPU", None)
    monkeypatch.setattr(bench, "LOAD_CPU", None)
    monkeypatch.setattr(bench, "WARM_UP_S", 1.0)
    monkeypatch.setattr(bench, "CONFIGS", [c for c in bench.CONFIGS if c.name in CHOSEN])
    out = tmp_path / "results"
    monkeypatch.setattr(sys, "argv", [
        "benchmarks", "--models", str(tiny_model_repository), "--mnist-dir", str(mnist_dir),
        "--quick", "--seconds", "1", "--repeat", "1", "--ab-rounds", "0", "--keys-rounds", "1",
        "--ab-seconds", "1", "--no-costs", "--out", str(out),
    ])  # fmt: skip
    assert bench.main() == 0

    (raw_file,) = out.glob("*.json")
    raw = json.loads(raw_file.read_text())
    measured = {(p["config"], p["concurrency"]) for p in raw["points"]}
    assert measured == {
        (report.TRANSPORT, 1), (report.TRANSPORT, 32),
        (report.TRANSPORT_2W, 1), (report.TRANSPORT_2W, 32),
        (report.V2_BINARY_H2LOAD, 1), (report.V2_BINARY_H2LOAD, 32),
        (report.GRPC, 1), (report.GRPC, 32),
        (report.GRPC_ONE_CONNECTION, 32),
        (report.GRPC_CEILING, 1), (report.GRPC_CEILING, 32),
    }  # fmt: skip
    for point in raw["points"]:
        load = point["load"]
        # Every call answered, and (gRPC) with a response message: none failed unseen.
        assert load["errors"] == 0, point
        assert load["requests"] > 0, point
        assert point["server_cpu_s"] > 0, point
    # Keys on/off: c=1 interleaved, c=32 together; every keyed request was let in (no 401).
    assert set(raw["keys"]) == {"1", "32"}
    for rounds in raw["keys"].values():
        for window in rounds:
            assert window["a"]["load"]["errors"] == window["b"]["load"]["errors"] == 0
            assert window["b"]["load"]["requests"] > 0
    issues = {t["issue"] for t in raw["targets"]}
    assert issues == {"25", "28"}  # 24's need the service's default rows, not run here

    (text_file,) = out.glob("*.md")
    text = text_file.read_text()
    assert "Issue 28 (gRPC), item 5:" in text
    assert "[issue 28] c=32 gRPC raw / HTTP v2 binary throughput" in text
    assert "[issue 25] keys on / off, p50 latency at c=1" in text
    assert "## Keys on / off (issue 25), c=32" in text
    assert f"| {report.GRPC} | 32 |" in text
    assert "the gRPC ceiling (grpcio, no service work)" in text
