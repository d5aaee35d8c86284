"""One real gated run: Locust headless against the real service (tiny ONNX model) on loopback.

The gate must exit 0 under a generous budget and non-zero under an impossible one, and in
distributed mode (``--processes 2``) only the master judges: one summary line, with the accuracy
counts shipped from the workers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from serving.testing import free_port
from tests.conftest import ServerStarter

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def run_locust(url: str, out: Path, budget_ms: float, *extra: str) -> tuple[int, list[str]]:
    cmd = [
        sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
        "-H", url, "-u", "4", "-r", "4", "-t", "4s", "--digits", "200",
        "--p95-budget-ms", str(budget_ms), "--max-error-rate", "0.01",
        "--only-summary", "--loglevel", "WARNING",
        "--html", str(out / "report.html"), "--csv", str(out / "stats"),
        "--json-file", str(out / "stats"), *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    lines = done.stdout.strip().splitlines()
    return done.returncode, lines


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_gate_passes_a_generous_budget_and_fails_an_impossible_one(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        code, lines = run_locust(server.base_url, tmp_path / "pass", 5000)
        assert code == 0, lines
        summary = fields(lines[-1])
        assert lines[-1].startswith("SUMMARY")
        assert summary["verdict"] == "PASS"
        assert int(summary["requests"]) > 0
        assert summary["error_rate"] == "0.0000"
        assert summary["accuracy"] != "n/a"  # every response was schema-valid and counted
        for name in ("report.html", "stats_stats.csv", "stats.json"):
            assert (tmp_path / "pass" / name).is_file()

        code, lines = run_locust(server.base_url, tmp_path / "fail", 0.001)
        assert code == 1, lines
        assert fields(lines[-1])["verdict"] == "FAIL"
        assert "> budget 0.001 ms" in lines[-1]


def test_distributed_run_is_judged_once_by_the_master(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        code, lines = run_locust(server.base_url, tmp_path, 0.001, "--processes", "2")
    summaries = [line for line in lines if line.startswith("SUMMARY")]
    assert code == 1, lines
    assert len(summaries) == 1, lines
    assert summaries == [lines[-1]]
    summary = fields(summaries[0])
    assert int(summary["requests"]) > 0
    assert summary["accuracy"] != "n/a"  # counts reached the master from the workers
    # Sub-millisecond resolution reached the master from the workers: fractional percentiles.
    percentiles = [float(summary[key]) for key in ("p50_ms", "p95_ms", "p99_ms")]
    assert any(value != round(value) for value in percentiles), percentiles


def test_feedback_and_drift_reach_the_service_and_the_summary(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        code, lines = run_locust(
            server.base_url, tmp_path, 5000, "--feedback-ratio", "1", "--feedback-batch", "10",
            "--drift", "0.5",
        )  # fmt: skip
        quality = httpx.get(f"{server.base_url}/v1/quality").json()
        metrics = httpx.get(f"{server.base_url}/metrics").text
    assert code == 0, lines
    summary = fields(lines[-1])
    # Every prediction's label was sent back (users flush their last batch when they stop).
    assert int(summary["live_labelled"]) == quality["labelled"] > 0
    assert float(summary["live_accuracy"]) == pytest.approx(quality["accuracy"], abs=1e-4)
    assert 'inference_aberrant_inputs_total{reason="saturated"}' in metrics  # inverted digits


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_v2_protocol_runs_each_encoding(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path, encoding: str
) -> None:
    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        code, lines = run_locust(
            server.base_url, tmp_path, 5000, "--protocol", "v2", "--encoding", encoding
        )
    assert code == 0, lines
    summary = fields(lines[-1])
    assert int(summary["requests"]) > 0
    assert summary["error_rate"] == "0.0000"
    assert summary["accuracy"] != "n/a"  # every v2 response was schema-valid and counted
    stats = (tmp_path / "stats_stats.csv").read_text()
    name = f"v2 infer {encoding}"
    assert name in stats
    assert "predict" not in stats  # only the chosen protocol and encoding were sent


def test_grpc_user_is_gated_like_http(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    """--protocol grpc: the official tritonclient.grpc client as a Locust custom client; its
    calls count in the same stats, pass a generous gate and fail an impossible one, in one
    process and distributed (a worker must also exit: tritonclient's channel is closed while
    gevent still runs, loadtest/oip_grpc.py)."""
    grpc_port = free_port()
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
           "SERVING_GRPC_PORT": str(grpc_port)}  # fmt: skip
    grpc = ("--protocol", "grpc", "--grpc-host", f"127.0.0.1:{grpc_port}")
    with serving_server(env) as server:
        code, lines = run_locust(server.base_url, tmp_path / "pass", 5000, *grpc)
        assert code == 0, lines
        summary = fields(lines[-1])
        assert int(summary["requests"]) > 0
        assert summary["error_rate"] == "0.0000"
        assert summary["accuracy"] != "n/a"  # every answer was checked and counted
        stats = (tmp_path / "pass" / "stats_stats.csv").read_text()
        assert "grpc,ModelInfer raw," in stats
        assert "predict" not in stats  # only the gRPC user ran

        code, lines = run_locust(server.base_url, tmp_path / "fail", 0.001, *grpc)
        assert code == 1, lines
        assert "> budget 0.001 ms" in lines[-1]

        code, lines = run_locust(server.base_url, tmp_path / "dist", 5000, *grpc,
                                 "--processes", "2")  # fmt: skip
        assert code == 0, lines
        assert int(fields(lines[-1])["requests"]) > 0


def test_grpc_calls_to_a_closed_port_fail_the_gate(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        code, lines = run_locust(server.base_url, tmp_path, 5000, "--protocol", "grpc",
                                 "--grpc-host", f"127.0.0.1:{free_port()}")  # fmt: skip
    assert code == 1, lines
    assert "error rate 1.0000 > max 0.01" in lines[-1]
