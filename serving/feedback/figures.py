"""Quality figures of labelled predictions: accuracy, per-class precision/recall/F1, confusion.

They follow scikit-learn's definitions (``tests/serving/feedback/test_figures.py`` compares them):
a class never predicted has precision 0, a class never true has recall 0, and F1 is
``2 tp / (2 tp + fp + fn)`` (0 when that is 0/0). The macro F1 averages the classes that appear
as a true or a predicted label in the window, as ``f1_score(average="macro")`` does.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from msgspec import Struct


class ClassQuality(Struct):
    label: int
    precision: float
    recall: float
    f1: float
    support: int


class Figures(Struct):
    """Everything ``/v1/quality`` reports about the window (``labelled`` pairs)."""

    labelled: int
    accuracy: float | None
    macro_f1: float | None
    per_class: list[ClassQuality]
    confusion: list[list[int]]
    true_label_distribution: list[float]
    predicted_distribution: list[float]


def _ratio(
    numerator: npt.NDArray[np.int64], denominator: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    return np.divide(
        numerator,
        denominator,
        out=np.zeros(numerator.shape, dtype=np.float64),
        where=denominator > 0,
    )


def figures(
    true: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], classes: int = 10
) -> Figures:
    """The window's figures; accuracy and macro F1 are None while nothing is labelled."""
    n = int(true.size)
    confusion = np.bincount(true * classes + predicted, minlength=classes * classes)
    confusion = confusion[: classes * classes].reshape(classes, classes)
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    precision = _ratio(tp, predicted_count)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted_count)
    present = (support + predicted_count) > 0
    per_class = [
        ClassQuality(c, float(precision[c]), float(recall[c]), float(f1[c]), int(support[c]))
        for c in range(classes)
    ]
    return Figures(
        labelled=n,
        accuracy=float(tp.sum() / n) if n else None,
        macro_f1=float(f1[present].mean()) if n else None,
        per_class=per_class,
        confusion=confusion.tolist(),
        true_label_distribution=[float(v) for v in (support / n if n else support * 0.0)],
        predicted_distribution=[float(v) for v in (predicted_count / n if n else support * 0.0)],
    )
