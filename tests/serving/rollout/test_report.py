"""The body of ``GET /v1/rollout`` from stored counts: readable figures (rates, agreement, a
p95 in milliseconds), None where there is nothing to divide, and a report before anything is
stored that says so with the default policy."""

from __future__ import annotations

import msgspec
import pytest

from serving.rollout.evidence import LATENCY_BINS, LATENCY_EDGES, Evidence, PairCounts
from serving.rollout.policy import Policy
from serving.rollout.report import figures, report


def test_figures_are_rates_of_the_counts() -> None:
    empty = Evidence.empty(1, 2, 3)
    latency = [0] * LATENCY_BINS
    latency[5] = 10  # every batch in bin 5
    stable = msgspec.structs.replace(
        empty.stable,
        rows=10,
        errors=2,
        classes=(4, 4, 0),
        confidence_sum=6.0,
        latency=tuple(latency),
        labelled=4,
        correct=3,
    )
    pairs = msgspec.structs.replace(
        PairCounts.empty(3), rows=8, confusion=(5, 1, 0, 0, 2, 0, 0, 0, 0), labelled=3,
        stable_only=1, candidate_only=2,
    )  # fmt: skip
    shown = figures(msgspec.structs.replace(empty, stable=stable, pairs=pairs))
    assert shown.stable.version == 1
    assert shown.stable.error_rate == pytest.approx(0.2)
    assert shown.stable.mean_confidence == pytest.approx(6.0 / 8)  # over answered rows only
    assert shown.stable.accuracy == pytest.approx(0.75)
    assert shown.stable.predicted_distribution == [0.5, 0.5, 0.0]
    p95_ms = shown.stable.p95_compute_ms
    assert p95_ms is not None
    assert LATENCY_EDGES[5] * 1e3 <= p95_ms <= LATENCY_EDGES[6] * 1e3  # in bin 5, in ms
    assert shown.pairs.rows == 8
    assert shown.pairs.agreement == pytest.approx(7 / 8)  # the confusion's diagonal
    assert (shown.pairs.stable_only_right, shown.pairs.candidate_only_right) == (1, 2)


def test_nothing_to_divide_is_none_not_zero() -> None:
    shown = figures(Evidence.empty(1, 2, 10))
    candidate = shown.candidate
    assert candidate.version == 2
    assert (candidate.error_rate, candidate.mean_confidence, candidate.accuracy) == (None,) * 3
    assert candidate.p95_compute_ms is None
    assert candidate.predicted_distribution == []
    assert shown.pairs.agreement is None


def test_before_anything_is_stored_the_report_is_the_default_policy_at_rest() -> None:
    body = report(None, None, "mnist")
    assert (body.model, body.running, body.stable, body.candidate) == ("mnist", False, None, None)
    assert (body.step, body.steps, body.compared) == (0, 0, 0)
    assert body.evidence is None
    assert body.policy == Policy()
    assert body.mode == Policy().mode
