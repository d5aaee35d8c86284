"""Prometheus figures of model quality (from feedback) and prediction drift, for the whole service.

Both read the shared store (``serving.feedback.store``), so every worker sets the same values and
the gauges combine with ``mostrecent`` across workers (not the worst worker's value):

- :class:`QualityMetrics`: counters of feedback by outcome and of the confusion matrix (each
  accepting worker increments its own; scrapes sum them), and gauges of the live accuracy,
  macro F1, per-class precision/recall/F1 and the accuracy drop against the model's test
  accuracy (``metadata.metrics``), recomputed when the labelled window changed.
- :class:`ServiceDrift`: each worker writes the histogram counts of its recent inputs (input
  features), predicted classes and confidences to the store; the sum over live workers is the
  service's window, compared with the training statistics (input PSI, ``drift.DriftMonitor``)
  and with the test set's predictions in ``metadata.prediction_reference`` (Jensen-Shannon
  distance of the predicted classes, PSI of the confidences; NaN without a reference).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge

from model_repository.features import psi
from model_repository.metadata import PredictionReference
from model_repository.predictions import (
    CONFIDENCE_EDGES,
    class_counts,
    confidence_counts,
    js_distance,
)
from serving.feedback.figures import figures
from serving.feedback.store import Outcome, QualityStore
from serving.observability.drift import DriftMonitor

PREFIX = "inference"
NAN = float("nan")


class QualityMetrics:
    """Feedback counters and live-quality gauges; ``test_accuracy`` None: no drop gauge value."""

    def __init__(
        self,
        registry: CollectorRegistry,
        labels: Sequence[str],
        test_accuracy: float | None,
    ) -> None:
        r = registry
        self.labels = list(labels)
        self.test_accuracy = test_accuracy
        self.feedback = Counter(
            f"{PREFIX}_feedback", "Feedback items by outcome: accepted, duplicate, unknown.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.confusion = Counter(
            f"{PREFIX}_feedback_confusion",
            "Accepted feedback by true and predicted class (the confusion matrix since start).",
            ["true", "predicted"], registry=r,
        )  # fmt: skip

        def gauge(name: str, text: str, label: list[str] | None = None) -> Gauge:
            return Gauge(
                f"{PREFIX}_quality_{name}", text, label or [],
                multiprocess_mode="mostrecent", registry=r,
            )  # fmt: skip

        self.labelled = gauge("labelled", "Labelled predictions in the quality window.")
        self.accuracy = gauge("accuracy", "Accuracy over the quality window (NaN: no labels).")
        self.macro_f1 = gauge("macro_f1", "Macro F1 over the quality window (NaN: no labels).")
        self.accuracy_drop = gauge(
            "accuracy_drop",
            "Test accuracy from the model's metadata minus the live accuracy (NaN: unknown).",
        )
        self.precision = gauge("precision", "Precision of a class over the window.", ["label"])
        self.recall = gauge("recall", "Recall of a class over the window.", ["label"])
        self.f1 = gauge("f1", "F1 of a class over the window.", ["label"])
        for child in (self.accuracy, self.macro_f1, self.accuracy_drop):
            child.set(NAN)
        self._seen_version: object = None

    def on_feedback(self, outcome: Outcome) -> None:
        """Count one request's feedback (called in the thread that stored it)."""
        if outcome.accepted:
            self.feedback.labels("accepted").inc(len(outcome.accepted))
        if outcome.duplicates:
            self.feedback.labels("duplicate").inc(outcome.duplicates)
        if outcome.unknown:
            self.feedback.labels("unknown").inc(outcome.unknown)
        for item in outcome.accepted:
            self.confusion.labels(str(item.true_label), str(item.predicted)).inc()

    def publish(self, store: QualityStore) -> None:
        """Recompute the gauges from the store's window (skipped while it is unchanged)."""
        version = store.version()
        if version == self._seen_version:
            return
        self._seen_version = version
        current = figures(*store.pairs(), classes=len(self.labels))
        self.labelled.set(current.labelled)
        if current.accuracy is None or current.macro_f1 is None:
            return
        self.accuracy.set(current.accuracy)
        self.macro_f1.set(current.macro_f1)
        if self.test_accuracy is not None:
            self.accuracy_drop.set(self.test_accuracy - current.accuracy)
        for item in current.per_class:
            label = self.labels[item.label]
            self.precision.labels(label).set(item.precision)
            self.recall.labels(label).set(item.recall)
            self.f1.labels(label).set(item.f1)


class PredictionWindow:
    """The last ``window`` predicted classes and confidences of this worker (a ring buffer)."""

    def __init__(self, window: int) -> None:
        self._labels = np.zeros(window, dtype=np.int64)
        self._confidences = np.zeros(window, dtype=np.float64)
        self._window = window
        self._next = 0
        self._filled = 0

    def update(
        self, labels: npt.NDArray[np.integer], confidences: npt.NDArray[np.floating]
    ) -> None:
        """Absorb the newest predictions (the batcher's ``Outputs``: no argmax here)."""
        if labels.shape[0] == 0:
            return
        labels, confidences = labels[-self._window :], confidences[-self._window :]
        n = labels.shape[0]
        positions = (self._next + np.arange(n)) % self._window
        self._labels[positions] = labels
        self._confidences[positions] = confidences
        self._next = (self._next + n) % self._window
        self._filled = min(self._window, self._filled + n)

    def counts(self, classes: int) -> npt.NDArray[np.int64]:
        """Predicted-class counts then confidence-bin counts, as one vector."""
        labels = self._labels[: self._filled]
        confidences = self._confidences[: self._filled]
        return np.concatenate([class_counts(labels, classes), confidence_counts(confidences)])


class ServiceDrift:
    """Whole-service input and prediction drift, from every live worker's window counts."""

    def __init__(
        self,
        registry: CollectorRegistry,
        drift: DriftMonitor,
        window: int,
        classes: int,
        reference: PredictionReference | None,
        worker: int | None = None,
    ) -> None:
        self.drift = drift
        self.predictions = PredictionWindow(window)
        self.classes = classes
        self.reference = reference
        self._worker = os.getpid() if worker is None else worker  # its row in the store
        self.js = Gauge(
            f"{PREFIX}_drift_prediction_js_distance",
            "Jensen-Shannon distance (base 2) of the predicted classes of recent traffic vs the "
            "test set's (<0.1 stable, >0.2 shifted; NaN without a reference).",
            multiprocess_mode="mostrecent", registry=registry,
        )  # fmt: skip
        self.confidence_psi = Gauge(
            f"{PREFIX}_drift_confidence_psi",
            "PSI of the top-1 confidence of recent traffic vs the test set's (NaN without a "
            "reference).",
            multiprocess_mode="mostrecent", registry=registry,
        )  # fmt: skip
        self.service_images = Gauge(
            f"{PREFIX}_drift_service_window_images",
            "Images in the whole service's drift window (the sum of the workers' windows).",
            multiprocess_mode="mostrecent", registry=registry,
        )  # fmt: skip
        self.js.set(NAN)
        self.confidence_psi.set(NAN)

    def local_counts(self) -> npt.NDArray[np.int64]:
        """This worker's window counts; on the event loop (it reads the loop's buffers), where
        it also sets this worker's own drift summary gauges."""
        self.drift.publish_summary(self.drift.report())
        features = self.drift.window_counts()
        return np.concatenate([*features.values(), self.predictions.counts(self.classes)])

    def publish(self, store: QualityStore, local: npt.NDArray[np.int64]) -> None:
        """Share this worker's counts and set the gauges from the service's (in a thread)."""
        store.put_window(self._worker, local)
        total = store.service_window(local.size)
        features: dict[str, npt.NDArray[np.int64]] = {}
        offset = 0
        for name, counts in self.drift.window_counts_layout().items():
            features[name] = total[offset : offset + counts]
            offset += counts
        predicted = total[offset : offset + self.classes]
        confidences = total[offset + self.classes :]
        if predicted.sum():
            self.drift.publish_scores(self.drift.scores(features))
        self.service_images.set(int(predicted.sum()))
        if self.reference is None or not predicted.sum():
            return
        self.js.set(js_distance(predicted, self.reference.predicted_distribution))
        if list(self.reference.confidence.edges) == list(CONFIDENCE_EDGES):
            self.confidence_psi.set(psi(self.reference.confidence.counts, confidences))
