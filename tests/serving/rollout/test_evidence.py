"""The recorder's vectorised counts equal a plain per-row computation, and workers' records add."""

from __future__ import annotations

import msgspec
import numpy as np
import numpy.typing as npt
import pytest

from model_repository.predictions import CONFIDENCE_EDGES
from serving.rollout.evidence import (
    LATENCY_EDGES,
    Evidence,
    EvidenceRecorder,
    Role,
)

CLASSES = 10


def random_outputs(rng: np.random.Generator, rows: int) -> npt.NDArray[np.float32]:
    logits = rng.normal(0, 3, size=(rows, CLASSES))
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(
        np.float32
    )
    return probabilities


def test_one_version_s_batches_are_counted_like_row_by_row() -> None:
    rng = np.random.default_rng(0)
    batches = [random_outputs(rng, rows) for rows in (1, 7, 64, 33)]
    recorder = EvidenceRecorder(stable_version=1, candidate_version=2, classes=CLASSES)
    for i, outputs in enumerate(batches):
        recorder.record(Role.CANDIDATE, outputs, seconds=1e-4 * (i + 1), rows=outputs.shape[0])
    counts = recorder.take().candidate

    everything = np.concatenate(batches)
    labels = [int(np.argmax(row)) for row in everything]
    confidences = [float(np.max(row)) for row in everything]
    assert counts.rows == len(labels) == 105
    assert (counts.batches, counts.errors) == (4, 0)
    assert list(counts.classes) == [labels.count(k) for k in range(CLASSES)]
    assert list(counts.confidence) == np.histogram(confidences, bins=CONFIDENCE_EDGES)[0].tolist()
    assert counts.confidence_sum == pytest.approx(sum(confidences), rel=1e-6)
    assert counts.confidence_squares == pytest.approx(sum(c * c for c in confidences), rel=1e-6)
    latencies = [1e-4, 2e-4, 3e-4, 4e-4]
    assert list(counts.latency) == np.histogram(latencies, bins=LATENCY_EDGES)[0].tolist()


def test_a_confidence_of_exactly_one_and_edge_values_fall_where_np_histogram_puts_them() -> None:
    outputs = np.zeros((4, CLASSES), dtype=np.float32)
    outputs[:, 0] = [1.0, 0.5, 0.99, 0.3]
    recorder = EvidenceRecorder(1, 2, CLASSES)
    recorder.record(Role.STABLE, outputs, 1e-4, 4)
    expected = np.histogram([1.0, 0.5, 0.99, 0.3], bins=CONFIDENCE_EDGES)[0].tolist()
    assert list(recorder.take().stable.confidence) == expected


def test_latency_beyond_the_bins_is_clamped_to_the_end_bins() -> None:
    recorder = EvidenceRecorder(1, 2, CLASSES)
    outputs = np.eye(CLASSES, dtype=np.float32)[:1]
    for seconds in (1e-9, 100.0):
        recorder.record(Role.STABLE, outputs, seconds, 1)
    latency = recorder.take().stable.latency
    assert (latency[0], latency[-1], sum(latency)) == (1, 1, 2)


def test_a_failed_batch_counts_its_rows_as_errors_and_no_answers() -> None:
    recorder = EvidenceRecorder(1, 2, CLASSES)
    recorder.record(Role.CANDIDATE, None, 1e-3, rows=8)
    counts = recorder.take().candidate
    assert (counts.rows, counts.errors, counts.answered, sum(counts.classes)) == (8, 8, 0, 0)


def test_pairs_record_agreement_confusion_and_confidence_differences() -> None:
    rng = np.random.default_rng(1)
    stable = random_outputs(rng, 50)
    candidate = stable.copy()
    candidate[:10] = candidate[:10][:, ::-1]  # ten rows answered differently (mostly)
    recorder = EvidenceRecorder(1, 2, CLASSES)
    recorder.record_pair(stable, 2e-4, candidate, 3e-4, rows=50)
    evidence = recorder.take()
    pairs = evidence.pairs
    s, c = stable.argmax(axis=1), candidate.argmax(axis=1)
    assert pairs.rows == 50
    assert pairs.agreements == int((s == c).sum())
    assert pairs.confusion[s[0] * CLASSES + c[0]] >= 1
    difference = candidate.max(axis=1).astype(np.float64) - stable.max(axis=1)
    assert pairs.confidence_difference_sum == pytest.approx(difference.sum(), abs=1e-9)
    # Both versions' own counts are updated by the pair call.
    assert evidence.stable.rows == evidence.candidate.rows == 50
    assert sum(pairs.stable_latency) == sum(pairs.candidate_latency) == 1


def test_a_pair_whose_candidate_failed_counts_errors_but_no_comparison() -> None:
    recorder = EvidenceRecorder(1, 2, CLASSES)
    recorder.record_pair(np.eye(CLASSES, dtype=np.float32), 1e-4, None, 1e-4, rows=CLASSES)
    evidence = recorder.take()
    assert (evidence.pairs.rows, evidence.candidate.errors, evidence.stable.answered) == (
        0,
        CLASSES,
        CLASSES,
    )


def test_paired_labels_score_both_versions() -> None:
    recorder = EvidenceRecorder(1, 2, CLASSES)
    true = np.array([0, 1, 2, 3, 4])
    recorder.record_paired_labels(true, np.array([0, 1, 2, 9, 9]), np.array([0, 9, 2, 3, 9]))
    evidence = recorder.take()
    pairs = evidence.pairs
    assert (pairs.labelled, pairs.both_right, pairs.stable_only, pairs.candidate_only) == (
        5,
        2,
        1,
        1,
    )
    assert (evidence.stable.labelled, evidence.stable.correct) == (5, 3)
    assert (evidence.candidate.labelled, evidence.candidate.correct) == (5, 3)


def test_unpaired_labels_score_the_version_that_answered() -> None:
    recorder = EvidenceRecorder(1, 2, CLASSES)
    recorder.record_labels(Role.CANDIDATE, np.array([1, 2, 3]), np.array([1, 2, 0]))
    evidence = recorder.take()
    assert (evidence.candidate.labelled, evidence.candidate.correct) == (3, 2)
    assert evidence.stable.labelled == 0


def test_two_workers_merged_equal_one_worker_that_saw_everything() -> None:
    rng = np.random.default_rng(2)
    batches = [(random_outputs(rng, 16), random_outputs(rng, 16)) for _ in range(6)]
    one = EvidenceRecorder(1, 2, CLASSES)
    first, second = EvidenceRecorder(1, 2, CLASSES), EvidenceRecorder(1, 2, CLASSES)
    for i, (stable, candidate) in enumerate(batches):
        one.record_pair(stable, 1e-4, candidate, 2e-4, 16)
        (first if i % 2 else second).record_pair(stable, 1e-4, candidate, 2e-4, 16)
    whole = one.take()
    merged = first.take().merged(second.take())
    assert merged.pairs == whole.pairs
    assert merged.stable.classes == whole.stable.classes
    assert merged.candidate.confidence_sum == pytest.approx(whole.candidate.confidence_sum)


def test_take_hands_over_and_starts_afresh() -> None:
    recorder = EvidenceRecorder(1, 2, CLASSES)
    seen = [recorder.pending]
    recorder.record(Role.STABLE, np.eye(CLASSES, dtype=np.float32), 1e-4, CLASSES)
    seen.append(recorder.pending)
    assert recorder.take().stable.rows == CLASSES
    seen.append(recorder.pending)
    assert seen == [False, True, False]
    assert recorder.take() == Evidence.empty(1, 2, CLASSES)


def test_evidence_of_another_rollout_does_not_merge() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        Evidence.empty(1, 2, CLASSES).merged(Evidence.empty(1, 3, CLASSES))


def test_evidence_round_trips_through_json_and_stays_small() -> None:
    rng = np.random.default_rng(3)
    recorder = EvidenceRecorder(1, 2, CLASSES)
    for _ in range(100):
        recorder.record_pair(random_outputs(rng, 64), 1e-4, random_outputs(rng, 64), 2e-4, 64)
    evidence = recorder.take()
    encoded = msgspec.json.encode(evidence)
    assert msgspec.json.decode(encoded, type=Evidence) == evidence
    assert len(encoded) < 4096  # bounded whatever the traffic: counts and fixed histograms


def test_role_of_names_the_two_versions_only() -> None:
    recorder = EvidenceRecorder(stable_version=3, candidate_version=4, classes=CLASSES)
    assert (recorder.role_of(3), recorder.role_of(4), recorder.role_of(2)) == (
        Role.STABLE,
        Role.CANDIDATE,
        None,
    )
