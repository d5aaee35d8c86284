from __future__ import annotations

import numpy as np
import pytest

from model_repository.features import PSI_ALERT, PSI_WARN, image_features, psi, training_stats


def test_features_of_known_images() -> None:
    blank = np.zeros(784, np.float32)
    half = np.where(np.arange(784) < 392, 1.0, 0.0).astype(np.float32)
    features = image_features(np.stack([blank, half]))
    np.testing.assert_allclose(features["mean_intensity"], [0.0, 0.5])
    np.testing.assert_allclose(features["ink_fraction"], [0.0, 0.5])


def test_training_stats_use_decile_bins() -> None:
    rng = np.random.default_rng(0)
    pixels = (rng.random((5000, 784)) < rng.uniform(0.05, 0.3, (5000, 1))).astype(np.float32)
    stats = training_stats(pixels)
    assert stats.num_images == 5000
    hist = stats.features["ink_fraction"].histogram
    assert hist.edges[0] == 0.0
    assert hist.edges[-1] == 1.0
    assert sum(hist.counts) == 5000
    assert max(hist.counts) < 0.12 * 5000  # each decile holds ~10%


def test_psi_is_zero_for_identical_and_large_for_disjoint() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert psi([100, 0, 0], [0, 0, 100]) > PSI_ALERT
    assert 0 < psi([50, 50], [55, 45]) < PSI_WARN


def test_psi_of_empty_window_is_zero() -> None:
    assert psi([10, 10], [0, 0]) == 0.0
