"""Drift on real data: genuine MNIST test digits against statistics of the genuine train set."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from model_repository.features import PSI_ALERT, PSI_WARN, image_features, training_stats
from model_repository.metadata import TrainingStats
from serving.observability.drift import DriftMonitor
from training.idx import TRAIN_IMAGES, load_test_digits, read_idx

WINDOW = 1000
Pixels = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def train_stats(mnist_dir: Path) -> TrainingStats:
    images = read_idx(mnist_dir / TRAIN_IMAGES)
    return training_stats(images.reshape(len(images), -1) / 255.0)


@pytest.fixture(scope="module")
def test_digits(mnist_dir: Path) -> Pixels:
    images, _ = load_test_digits(mnist_dir)
    return images.reshape(len(images), -1) / 255.0


def fill(monitor: DriftMonitor, pixels: Pixels, batch: int = 37) -> None:
    for start in range(0, len(pixels), batch):
        monitor.update(pixels[start : start + batch])


def test_genuine_test_digits_do_not_drift(train_stats: TrainingStats, test_digits: Pixels) -> None:
    monitor = DriftMonitor(train_stats, WINDOW)
    fill(monitor, test_digits[:WINDOW])
    report = monitor.report()
    assert report.window_images == WINDOW
    assert report.max_psi < PSI_WARN, report.psi
    # The window summary is the mean of the features over exactly the images added.
    assert report.window_mean["mean_intensity"] == pytest.approx(test_digits[:WINDOW].mean())


def test_window_slides_over_the_most_recent_images(
    train_stats: TrainingStats, test_digits: Pixels
) -> None:
    monitor = DriftMonitor(train_stats, WINDOW)
    fill(monitor, 1.0 - test_digits[:WINDOW])  # drifted traffic first...
    assert monitor.report().max_psi > PSI_ALERT
    fill(monitor, test_digits[WINDOW : 2 * WINDOW])  # ...then a full window of genuine digits
    report = monitor.report()
    assert report.window_images == WINDOW
    assert report.max_psi < PSI_WARN, report.psi
    expected = test_digits[WINDOW : 2 * WINDOW].mean()
    assert report.window_mean["mean_intensity"] == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["inverted", "uniform noise"])
def test_non_mnist_inputs_raise_an_alert(
    train_stats: TrainingStats, test_digits: Pixels, kind: str
) -> None:
    if kind == "inverted":
        pixels = 1.0 - test_digits[:WINDOW]
    else:
        pixels = np.random.default_rng(0).random((WINDOW, 784))
    monitor = DriftMonitor(train_stats, WINDOW)
    fill(monitor, pixels)
    report = monitor.report()
    assert report.psi["mean_intensity"] > PSI_ALERT, report.psi
    assert report.psi["ink_fraction"] > PSI_ALERT, report.psi


def test_gauges_publish_the_report(train_stats: TrainingStats, test_digits: Pixels) -> None:
    registry = CollectorRegistry()
    monitor = DriftMonitor(train_stats, WINDOW, registry=registry)
    value = registry.get_sample_value
    monitor.update(test_digits[:10])
    assert value("inference_drift_window_images") == 0  # updates never publish: scrapes do
    monitor.publish()
    assert value("inference_drift_window_images") == 10
    monitor.update(1.0 - test_digits[:500])
    monitor.update(1.0 - test_digits[500:600])
    assert value("inference_drift_window_images") == 10
    report = monitor.publish()
    assert value("inference_drift_window_images") == 610
    for feature, score in report.psi.items():
        assert value("inference_drift_psi", {"feature": feature}) == pytest.approx(score)
    assert value("inference_drift_psi_max") == pytest.approx(report.max_psi)
    assert (value("inference_drift_psi_max") or 0) > PSI_ALERT


@given(
    sizes=st.lists(st.integers(1, 140), min_size=1, max_size=25),
    reports=st.sets(st.integers(0, 24)),
)
@settings(max_examples=60, deadline=None)
def test_the_window_is_exactly_the_latest_rows_whatever_the_batches_and_reports(
    train_stats: TrainingStats, test_digits: Pixels, sizes: list[int], reports: set[int]
) -> None:
    """The ring of raw rows wraps, takes batches larger than the window and reports in between:
    the report always covers exactly the latest ``window`` rows, in any case."""
    window = 100
    monitor = DriftMonitor(train_stats, window)
    sent, at = [], 0
    for index, size in enumerate(sizes):
        batch = test_digits[at : at + size]
        at += size
        monitor.update(batch)
        sent.append(batch)
        if index in reports:
            monitor.report()
    latest = np.concatenate(sent)[-window:]
    report = monitor.report()
    assert report.window_images == len(latest)
    expected = image_features(latest)
    for name, mean in report.window_mean.items():
        assert mean == pytest.approx(float(expected[name].mean()), rel=1e-9, abs=1e-12)


def test_update_copies_the_rows(train_stats: TrainingStats, test_digits: Pixels) -> None:
    """The caller's array is free to go (or change) once update returns."""
    monitor = DriftMonitor(train_stats, WINDOW)
    batch = test_digits[:50].copy()
    watched = weakref.ref(batch)
    monitor.update(batch)
    before = monitor.report()  # absorbed...
    monitor.update(batch)
    batch[:] = 1.0  # ...or not yet: either way the rows were copied
    del batch
    assert watched() is None
    after = monitor.report()
    assert after.window_images == 100
    assert after.window_mean == pytest.approx(before.window_mean)
