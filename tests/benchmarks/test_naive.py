"""The naive baseline of ``make bench`` is a real server computing real answers, and the report
judges the service against it by the issue's targets."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from benchmarks.report import CEILING_2W, NAIVE, NAIVE_2W, SERVICE, SERVICE_2W, Point, ratios
from benchmarks.wrk import LoadResult
from serving.testing import ServerProcess
from tests.support.server import REPO
from tests.support.tiny_model import synthetic_images

pytestmark = pytest.mark.e2e


def test_naive_server_answers_what_onnxruntime_computes(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    model = tiny_model_repository / "mnist" / "1" / "model.onnx"
    pixels = synthetic_images(3).astype(np.float32)
    expected = ort.InferenceSession(str(model)).run(["probabilities"], {"pixels": pixels})[0]
    server = ServerProcess(tmp_path / "naive.log", args=["-m", "benchmarks.naive"], cwd=REPO)
    server.cmd += ["--model", str(model), "--port", str(server.port)]
    with server:
        response = httpx.post(
            f"{server.base_url}/v1/predict", json={"instances": pixels.tolist()}, timeout=10
        )
    assert response.status_code == 200
    got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def point(config: str, concurrency: int, rps: float, p50: float, p95: float, p99: float) -> Point:
    load = LoadResult(int(rps * 10), 10.0, 0, p50, p95, p99, 1.0)
    return Point(config, concurrency, load, 1.0, 2.0)


def test_targets_against_the_naive_server() -> None:
    points = [
        point(SERVICE, 1, 1000, 0.50, 0.6, 0.7),
        point(NAIVE, 1, 1000, 0.47, 0.6, 0.7),
        point(SERVICE, 32, 2800, 8, 12, 14),
        point(NAIVE, 32, 2000, 12, 20, 25),
        point(SERVICE_2W, 32, 4000, 7, 15, 18),
        point(NAIVE_2W, 32, 3000, 9, 14, 16),
        point(CEILING_2W, 32, 4800, 6, 9, 10),
        point(SERVICE_2W, 64, 4100, 14, 18, 40),
    ]
    found = {r.name: r for r in ratios(points)}
    assert found["c=1 p50 minus naive p50 (ms)"].met is True  # 0.03 ms
    assert found["c=1 p50 minus naive p50 (ms)"].issue == "24"
    assert found[f"c=32 {SERVICE} / {NAIVE}"].met is True  # 1.4x
    assert found[f"c=32 {SERVICE_2W} / {NAIVE_2W}"].met is False  # 1.33x < 1.5
    ceiling = found["c=32 2 workers: service (defaults) / hello-world ceiling, p95 <= 20 ms"]
    assert ceiling.met is False  # 0.83x
    assert found["c=64 2 workers: p99 / p95"].met is False  # 2.2x
