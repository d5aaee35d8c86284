"""``Feedback``: the ids it issues are the ids it joins labels to (forged, malformed or foreign
ones count as unknown, repeats as duplicates), its listeners hear every outcome, and its report
is the window's figures. ``shared_by_workers`` fills in the key, the stores and the boot id once
for all workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.feedback.ids import PredictionIds
from serving.feedback.loop import (
    Feedback,
    LabelOffer,
    ModelQuality,
    build_feedback,
    served_test_accuracy,
    shared_by_workers,
)
from serving.feedback.store import Outcome, QualityStore
from serving.settings import Settings


def feedback(key: bytes = b"k" * 32) -> Feedback:
    store = QualityStore(None, window=100, horizon_s=3600, max_ids=1000)
    return Feedback(PredictionIds(key, 3600), store)


def test_labels_join_the_ids_it_issued_and_listeners_hear_each_outcome() -> None:
    loop = feedback()
    heard: list[Outcome] = []
    loop.listeners.append(heard.append)
    ids = loop.issue_ids([3, 1, 4], [0.9, 0.8, 0.7], "2")
    first = loop.receive([LabelOffer(ids[0], 3), LabelOffer(ids[1], 7)])
    again = loop.receive([LabelOffer(ids[0], 3), LabelOffer(ids[2], 4)])
    assert [(len(o.accepted), o.duplicates, o.unknown) for o in (first, again)] == [
        (2, 0, 0),
        (1, 1, 0),
    ]
    assert [(a.true_label, a.predicted) for a in first.accepted] == [(3, 3), (7, 1)]
    assert heard == [first, again]
    report = loop.report(ModelQuality("mnist", "2", 0.98))
    assert report.labelled == 3
    assert report.accuracy == pytest.approx(2 / 3)  # 3->3 and 4->4 right, 1 said to be 7
    assert report.window == 100
    assert report.model == ModelQuality("mnist", "2", 0.98)


def test_forged_malformed_and_foreign_ids_are_unknown_and_never_stored() -> None:
    loop = feedback()
    (genuine,) = loop.issue_ids([5], [0.5], "1")
    (foreign,) = feedback(key=b"another key").issue_ids([5], [0.5], "1")
    forged = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB")
    outcome = loop.receive(
        [LabelOffer(foreign, 5), LabelOffer(forged, 5), LabelOffer("not-an-id", 5)]
    )
    assert (outcome.accepted, outcome.duplicates, outcome.unknown) == ([], 0, 3)
    assert loop.figures().labelled == 0


def test_shared_by_workers_fills_in_what_is_unset_once(tmp_path: Path) -> None:
    settings = Settings()
    shared = shared_by_workers(settings)
    assert shared.feedback_key is not None
    assert len(shared.feedback_key) == 64  # 32 random bytes, hex
    assert shared.quality_store is not None
    assert shared.quality_store.name == "quality.sqlite3"
    assert shared.rollout_boot is not None  # one start: its workers share the boot id
    assert shared.rollout_store is not None
    assert shared.rollout_store.name == "rollout.sqlite3"
    assert shared_by_workers(shared) is shared  # nothing left to fill: the same settings
    again = shared_by_workers(settings)  # random per start
    assert (again.feedback_key, again.rollout_boot) != (shared.feedback_key, shared.rollout_boot)
    given = Settings(
        feedback_key="mine",
        quality_store=tmp_path / "q.sqlite3",
        rollout_boot="boot-1",
        rollout_store=tmp_path / "r.sqlite3",
    )
    assert shared_by_workers(given) is given


def test_two_apps_built_from_the_same_settings_accept_each_others_ids(tmp_path: Path) -> None:
    """What the workers of one service do: same key, same store."""
    settings = Settings(feedback_key="shared", quality_store=tmp_path / "q.sqlite3")
    one, other = build_feedback(settings), build_feedback(settings)
    try:
        ids = one.issue_ids([2, 2], [0.9, 0.9], "1")
        assert len(other.receive([LabelOffer(ids[0], 2)]).accepted) == 1
        assert one.receive([LabelOffer(ids[0], 2)]).duplicates == 1  # seen by the other
        assert one.figures().labelled == other.figures().labelled == 1
    finally:
        one.close()
        other.close()


def test_without_a_key_an_app_accepts_only_its_own_ids() -> None:
    one, other = build_feedback(Settings()), build_feedback(Settings())
    (issued,) = one.issue_ids([1], [0.9], "1")
    assert other.receive([LabelOffer(issued, 1)]).unknown == 1
    assert len(one.receive([LabelOffer(issued, 1)]).accepted) == 1


@pytest.mark.parametrize(
    ("accuracies", "variant", "expected"),
    [
        ({"onnx": 0.98, "fp32": 0.5, "onnx_int8": 0.97}, "fp32", 0.98),  # training's key first
        ({"fp32": 0.5, "int8": 0.4}, "fp32", 0.5),  # the tiny test model's
        ({"onnx": 0.98, "onnx_int8": 0.97, "int8": 0.4}, "int8", 0.97),
        ({"int8": 0.4}, "int8", 0.4),
        ({"onnx": 0.98}, "int8", None),  # never another variant's figure
        ({"onnx": 0.98}, "fp16", None),
    ],
)
def test_the_served_variants_test_accuracy(
    accuracies: dict[str, float], variant: str, expected: float | None
) -> None:
    assert served_test_accuracy(accuracies, variant) == expected
