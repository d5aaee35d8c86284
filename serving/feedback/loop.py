"""Feedback: issue prediction ids, join true labels to them, report the window's quality.

One :class:`Feedback` per app, built from the settings by :func:`build_feedback`. Its store
is shared by the workers (``store.QualityStore``), its ids are verified with the key every
worker holds (``ids.PredictionIds``), so every worker accepts every id and reports the same
figures. ``listeners`` are told about accepted feedback (the Prometheus counters).
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from serving.batching.request import SecondOpinion
from serving.feedback.figures import Figures, figures
from serving.feedback.ids import PredictionIds
from serving.feedback.store import Labelled, Outcome, QualityStore
from serving.settings import Settings

logger = logging.getLogger(__name__)

FeedbackListener = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class LabelOffer:
    """One item of a feedback request: an id and the true label the client says it has."""

    prediction_id: str
    label: int


class ModelQuality(msgspec.Struct):
    name: str
    version: str
    test_accuracy: float | None


class QualityReport(Figures, kw_only=True):
    window: int
    model: ModelQuality | None


class Feedback:
    """Prediction ids and the labelled window of one app."""

    def __init__(self, ids: PredictionIds, store: QualityStore) -> None:
        self.ids = ids
        self.store = store
        self.listeners: list[FeedbackListener] = []

    def issue_ids(
        self,
        labels: Sequence[int],
        confidences: Sequence[float],
        model_version: str,
        second: SecondOpinion | None = None,
    ) -> list[str]:
        """One prediction id per row (v1 puts them in each prediction, v2 in ``parameters``);
        with ``second`` (a rollout's other version on the same rows) ids that score both."""
        if second is None or second.outputs is None:
            return self.ids.issue(labels, confidences, model_version)
        return self.ids.issue_pairs(
            labels,
            confidences,
            model_version,
            second.outputs.labels.tolist(),
            second.outputs.confidences.tolist(),
            second.version,
        )

    def receive(self, offers: Sequence[LabelOffer]) -> Outcome:
        """Join each label to its id; forged, expired or malformed ids count as unknown."""
        joined: list[Labelled] = []
        unknown = 0
        for offer in offers:
            issued = self.ids.verify(offer.prediction_id)
            if issued is None:
                unknown += 1
            else:
                joined.append(
                    Labelled(
                        issued.tag,
                        issued.issued_at,
                        offer.label,
                        issued.label,
                        issued.model_version,
                        issued.second_label,
                        issued.second_version,
                    )
                )
        outcome = self.store.add(joined)
        outcome = Outcome(outcome.accepted, outcome.duplicates, outcome.unknown + unknown)
        for listener in self.listeners:
            listener(outcome)
        return outcome

    def figures(self, version: int | None = None) -> Figures:
        true, predicted = self.store.pairs(version)
        return figures(true, predicted)

    def report(self, model: ModelQuality | None, version: int | None = None) -> QualityReport:
        """The window's figures (``version``: of the predictions that version answered)."""
        current = self.figures(version)
        return QualityReport(
            **msgspec.structs.asdict(current), window=self.store.window, model=model
        )

    def close(self) -> None:
        self.store.close()


def shared_by_workers(settings: Settings) -> Settings:
    """Settings whose unset key and stores are filled in, once, before workers start.

    The CLI calls it so that every worker (they read the settings exported to the environment)
    verifies the others' ids and writes the same stores. A key generated here is valid until the
    service stops: set ``feedback_key`` to keep ids valid across restarts and replicas. The
    rollout's boot id names this start (its workers share it: the first decides whether a
    rollout resumes); its store, when unset, is a new file, so a restart starts from the
    repository (docs/rollout.md).
    """
    update: dict[str, object] = {}
    if settings.feedback_key is None:
        update["feedback_key"] = secrets.token_hex(32)
    if settings.quality_store is None:
        directory = Path(tempfile.mkdtemp(prefix="serving-quality-"))
        update["quality_store"] = directory / "quality.sqlite3"
    if settings.rollout_boot is None:
        update["rollout_boot"] = secrets.token_hex(8)
    if settings.rollout_store is None:
        directory = Path(tempfile.mkdtemp(prefix="serving-rollout-"))
        update["rollout_store"] = directory / "rollout.sqlite3"
    return settings.model_copy(update=update) if update else settings


def build_feedback(settings: Settings) -> Feedback:
    """The app's feedback from its settings (a private key and store when they are unset)."""
    key = settings.feedback_key
    if key is None:
        key = secrets.token_hex(32)
        logger.info("feedback_key unset: prediction ids are valid for this process only")
    store = QualityStore(
        settings.quality_store,
        window=settings.quality_window,
        horizon_s=settings.feedback_horizon_s,
        max_ids=settings.feedback_max_ids,
        stale_s=max(30.0, 3 * settings.metrics_sample_interval_s),
    )
    return Feedback(PredictionIds(key.encode(), settings.feedback_horizon_s), store)


#: Keys of ``metadata.metrics["test_accuracy"]`` per variant: training's, then the tiny model's.
_ACCURACY_KEYS = {"fp32": ("onnx", "fp32"), "int8": ("onnx_int8", "int8")}


def served_test_accuracy(accuracies: dict[str, float], variant: str) -> float | None:
    for key in _ACCURACY_KEYS.get(variant, ()):
        if key in accuracies:
            return accuracies[key]
    return None
