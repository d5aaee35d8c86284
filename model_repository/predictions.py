"""The model's own outputs as a drift reference (black-box shift detection on predictions).

Training records, from the test set, how often each class is predicted and how confident the
predictions are (``metadata.prediction_reference``). The service compares the same two
distributions over live traffic: the Jensen-Shannon distance of the predicted classes and the PSI
of the confidences. Both sides call these functions, so the bins and formulas cannot differ.

Reading the JS distance (base 2, in [0, 1]): below 0.1 (JS_WARN) the predicted classes look like
the test set's; above 0.2 (JS_ALERT) the traffic or the model's behaviour changed. Confidence PSI
reads like input PSI (``features.PSI_WARN`` / ``PSI_ALERT``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model_repository.metadata import Histogram, PredictionReference

#: Fixed confidence bins: a trained classifier puts most test predictions above 0.99, so decile
#: edges would collapse; these keep the low-confidence tail visible.
CONFIDENCE_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
JS_WARN = 0.1
JS_ALERT = 0.2


def confidence_counts(confidences: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Counts of top-1 probabilities over :data:`CONFIDENCE_EDGES` (1.0 falls in the last bin)."""
    values = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    counts, _ = np.histogram(values, bins=np.asarray(CONFIDENCE_EDGES))
    return counts.astype(np.int64)


def class_counts(predicted: npt.ArrayLike, classes: int) -> npt.NDArray[np.int64]:
    return np.bincount(np.asarray(predicted, dtype=np.int64), minlength=classes)[:classes]


def prediction_reference(probabilities: npt.NDArray[np.floating]) -> PredictionReference:
    """What ``metadata.prediction_reference`` holds, from the test set's probabilities."""
    predicted = probabilities.argmax(axis=1)
    counts = class_counts(predicted, probabilities.shape[1])
    return PredictionReference(
        num_images=int(probabilities.shape[0]),
        predicted_distribution=[float(c) for c in counts / max(int(counts.sum()), 1)],
        confidence=Histogram(
            edges=list(CONFIDENCE_EDGES),
            counts=[int(c) for c in confidence_counts(probabilities.max(axis=1))],
        ),
    )


def js_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two distributions or count vectors.

    NaN when either side is empty: there is nothing to compare yet.
    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        return float("nan")
    a, b = a / a.sum(), b / b.sum()
    m = (a + b) / 2

    def kl(x: npt.NDArray[np.float64]) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / m[mask])))

    return float(np.sqrt(max((kl(a) + kl(b)) / 2, 0.0)))
