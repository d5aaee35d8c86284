"""Several workers: each process writes its own value files; a scrape in any one aggregates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from serving.observability.metrics import (
    MULTIPROC_ENV,
    prepare_multiprocess_dir,
    render,
)

REPO = Path(__file__).resolve().parents[3]

WORKER = """
import numpy as np
from prometheus_client import CollectorRegistry, multiprocess
from serving.observability.metrics import ServingMetrics
import sys, os
requests, depth = int(sys.argv[1]), int(sys.argv[2])
metrics = ServingMetrics(CollectorRegistry(), [str(i) for i in range(10)])
for _ in range(requests):
    metrics.requests.labels("/v1/predict", "POST", "200", "k", "http").inc()
    metrics.request_latency.labels("/v1/predict").observe(0.0004)
metrics.queue_depth.set(depth)
metrics.refresh_process()
labels = np.full(requests, 4); confidences = np.ones(requests)
metrics.observe_outputs(labels, confidences, 0.5)
print(os.getpid())
"""


def run_worker(directory: Path, requests: int, depth: int) -> int:
    env = {**os.environ, MULTIPROC_ENV: str(directory), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(requests), str(depth)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout.strip())


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(CollectorRegistry()).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_two_workers_aggregate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "prom"
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    assert prepare_multiprocess_dir() == directory
    first = run_worker(directory, requests=3, depth=5)
    run_worker(directory, requests=4, depth=2)
    values = scrape()
    route = ("route", "/v1/predict")
    assert (
        values[
            (
                "inference_http_requests_total",
                (("key", "k"), ("method", "POST"), ("protocol", "http"), route, ("status", "200")),
            )
        ]
        == 7
    )
    assert (
        values[("inference_http_request_duration_seconds_bucket", (("le", "0.0005"), route))] == 7
    )
    assert values[("inference_predictions_total", (("label", "4"),))] == 7
    assert values[("inference_queue_depth_rows", ())] == 7  # livesum
    assert values[("inference_workers", ())] == 2
    assert values[("inference_process_resident_memory_bytes", ())] > 2 * 10_000_000
    # A worker that exits is dropped from the live gauges, its counters stay.
    multiprocess.mark_process_dead(first)  # type: ignore[no-untyped-call]
    values = scrape()
    assert values[("inference_queue_depth_rows", ())] == 2
    assert values[("inference_workers", ())] == 1
    assert (
        values[
            (
                "inference_http_requests_total",
                (("key", "k"), ("method", "POST"), ("protocol", "http"), route, ("status", "200")),
            )
        ]
        == 7
    )


def test_prepare_cleans_stale_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv(MULTIPROC_ENV, "")
    assert prepare_multiprocess_dir(directory) == directory
    assert list(directory.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(directory)


def test_single_process_mode_without_the_variable() -> None:
    assert prepare_multiprocess_dir() is None
    assert MULTIPROC_ENV not in os.environ
