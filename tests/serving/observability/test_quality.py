"""Whole-service drift: two workers' windows are summed, not the worst worker's PSI taken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_repository.features import psi, training_stats
from model_repository.predictions import prediction_reference
from serving.batching import Outputs
from serving.feedback.store import QualityStore
from serving.observability.drift import DriftMonitor
from serving.observability.quality import ServiceDrift
from training.idx import TRAIN_IMAGES, load_test_digits, read_idx

WINDOW = 500


def test_each_worker_reports_the_psi_of_the_summed_windows(mnist_dir: Path, tmp_path: Path) -> None:
    train = read_idx(mnist_dir / TRAIN_IMAGES)[:5000].reshape(5000, -1) / 255.0
    stats = training_stats(train)
    images, _ = load_test_digits(mnist_dir)
    genuine = images[:WINDOW].reshape(WINDOW, -1) / 255.0
    drifted = 1.0 - images[WINDOW : 2 * WINDOW].reshape(WINDOW, -1) / 255.0
    rng = np.random.default_rng(0)
    reference = prediction_reference(rng.dirichlet(np.ones(10), 1000))
    path = tmp_path / "quality.sqlite3"
    workers = []
    for worker, pixels in enumerate((genuine, drifted)):
        registry = CollectorRegistry()
        drift = DriftMonitor(stats, WINDOW, registry=registry)
        # Two processes in real life, told apart by pid.
        service = ServiceDrift(registry, drift, WINDOW, 10, reference, worker=worker + 1)
        drift.update(pixels)
        outputs = Outputs.of(rng.dirichlet(np.ones(10), WINDOW).astype(np.float32))
        service.predictions.update(outputs.labels, outputs.confidences)
        workers.append(
            (registry, drift, service, QualityStore(path, window=10, horizon_s=60, max_ids=1000))
        )
    for _, _, service, store in workers:
        service.publish(store, service.local_counts())
    for _, _, service, store in workers:  # the second pass sees both workers' windows
        service.publish(store, service.local_counts())

    own = [drift.report().max_psi for _, drift, _, _ in workers]
    summed = {
        name: workers[0][1].window_counts()[name] + workers[1][1].window_counts()[name]
        for name in ("mean_intensity", "ink_fraction")
    }
    expected = max(
        psi(stats.features[name].histogram.counts, counts) for name, counts in summed.items()
    )
    for registry, *_ in workers:
        assert registry.get_sample_value("inference_drift_psi_max") == pytest.approx(expected)
        assert registry.get_sample_value("inference_drift_service_window_images") == 2 * WINDOW
    assert own[0] < expected < own[1]  # between the genuine and the drifted worker's own PSI
