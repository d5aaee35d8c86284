"""The quality figures equal scikit-learn's on the same (true, predicted) pairs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from serving.feedback.figures import figures

LABELS = list(range(10))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_figures_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 10, 500)
    # Mostly right, some classes never predicted (8, 9 become 0), some confusion.
    predicted = np.where(rng.random(500) < 0.8, true, rng.integers(0, 10, 500))
    predicted[predicted >= 8] = 0
    if seed == 2:
        true[true == 5] = 4  # a class never true, but predicted
    got = figures(true, predicted)
    assert got.labelled == 500
    assert got.accuracy == pytest.approx(accuracy_score(true, predicted))
    with np.errstate(all="ignore"):
        assert got.macro_f1 == pytest.approx(
            f1_score(true, predicted, average="macro", zero_division=0)
        )
        precision, recall, f1, support = precision_recall_fscore_support(
            true, predicted, labels=LABELS, zero_division=0
        )
    assert [c.precision for c in got.per_class] == pytest.approx(precision.tolist())
    assert [c.recall for c in got.per_class] == pytest.approx(recall.tolist())
    assert [c.f1 for c in got.per_class] == pytest.approx(f1.tolist())
    assert [c.support for c in got.per_class] == support.tolist()
    assert got.confusion == confusion_matrix(true, predicted, labels=LABELS).tolist()
    assert got.true_label_distribution == pytest.approx(np.bincount(true, minlength=10) / 500)
    assert got.predicted_distribution == pytest.approx(np.bincount(predicted, minlength=10) / 500)


def test_empty_window_has_no_accuracy() -> None:
    empty = np.zeros(0, dtype=np.int64)
    got = figures(empty, empty)
    assert (got.labelled, got.accuracy, got.macro_f1) == (0, None, None)
    assert got.confusion == [[0] * 10 for _ in range(10)]
