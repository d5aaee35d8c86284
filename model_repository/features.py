"""Per-image features that describe the input distribution, for drift detection.

Training records their distribution over the training set (``metadata.training_stats``); the
service keeps a sliding window of the same features over live traffic and compares the two
with the Population Stability Index (PSI). Both sides call these functions, so the features
are computed identically.

Why these two features: they are cheap (one pass over the batch, done per batch, not per
pixel per request) and they move strongly for the failures seen in practice: inverted images
(dark digit on white paper: mean intensity ~0.87 instead of ~0.13), noise or blank frames
(ink fraction far from MNIST's ~0.19), wrong scaling (0-255 values clipped to 1: ink fraction
jumps), thick or thin pens and scanning contrast changes (both shift).

Bin edges are the training deciles, so every bin holds ~10% of the training images and PSI is
sensitive across the whole range; the outer edges are the value range [0, 1].
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model_repository.metadata import FeatureStats, Histogram, TrainingStats

#: A pixel counts as ink when its scaled value exceeds this.
INK_THRESHOLD = 0.5
FEATURE_NAMES = ("mean_intensity", "ink_fraction")
DEFAULT_BINS = 10
#: Proportions are floored at this before the logarithm: an empty bin gives a large, finite PSI.
PSI_EPSILON = 1e-4
#: Conventional PSI reading: below 0.1 stable, 0.1-0.25 moderate shift, above 0.25 major shift.
PSI_WARN = 0.1
PSI_ALERT = 0.25

FloatArray = npt.NDArray[np.floating]


def image_features(pixels: FloatArray) -> dict[str, FloatArray]:
    """Features of each row of ``pixels`` (shape ``(n, 784)``, values in [0, 1])."""
    return {
        "mean_intensity": pixels.mean(axis=1, dtype=np.float64),
        "ink_fraction": (pixels > INK_THRESHOLD).mean(axis=1, dtype=np.float64),
    }


def feature_stats(values: FloatArray, bins: int = DEFAULT_BINS) -> FeatureStats:
    """Mean, std and a decile histogram of one feature over the training set."""
    inner = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.concatenate([[0.0], np.unique(inner), [1.0]])
    counts, _ = np.histogram(values, bins=edges)
    return FeatureStats(
        mean=float(values.mean()),
        std=float(values.std()),
        histogram=Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts]),
    )


def training_stats(pixels: FloatArray, bins: int = DEFAULT_BINS) -> TrainingStats:
    """Everything ``metadata.training_stats`` holds, from the scaled training images."""
    features = image_features(pixels)
    return TrainingStats(
        num_images=int(pixels.shape[0]),
        pixel_mean=float(pixels.mean(dtype=np.float64)),
        pixel_std=float(pixels.std(dtype=np.float64)),
        features={name: feature_stats(values, bins) for name, values in features.items()},
    )


def psi(expected_counts: npt.ArrayLike, actual_counts: npt.ArrayLike) -> float:
    """Population Stability Index between two histograms over the same bins."""
    expected = np.asarray(expected_counts, dtype=np.float64)
    actual = np.asarray(actual_counts, dtype=np.float64)
    if expected.sum() <= 0 or actual.sum() <= 0:
        return 0.0
    e = np.maximum(expected / expected.sum(), PSI_EPSILON)
    a = np.maximum(actual / actual.sum(), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))
