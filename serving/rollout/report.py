"""The body of ``GET /v1/rollout``: the state, the evidence in readable figures, the last
verdict with every rule's result, the refused versions and the history (newest first).

Built from what the store holds, so any worker answers the same; encode with
``msgspec.json.encode``.
"""

from __future__ import annotations

import msgspec

from serving.rollout.evidence import LATENCY_EDGES, Evidence, VersionCounts
from serving.rollout.judge import Verdict
from serving.rollout.policy import Mode, Policy
from serving.rollout.state import Decision, Refusal, RolloutState
from serving.rollout.stats import histogram_quantile


class VersionFigures(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    rows: int
    error_rate: float | None
    mean_confidence: float | None
    accuracy: float | None
    labelled: int
    predicted_distribution: list[float]
    p95_compute_ms: float | None


class PairFigures(msgspec.Struct, frozen=True, kw_only=True):
    rows: int
    agreement: float | None
    labelled: int
    stable_only_right: int
    candidate_only_right: int


class EvidenceFigures(msgspec.Struct, frozen=True, kw_only=True):
    stable: VersionFigures
    candidate: VersionFigures
    pairs: PairFigures


class RolloutReport(msgspec.Struct, frozen=True, kw_only=True):
    model: str
    running: bool
    mode: Mode  # of the policy in force (of the rollout, while one runs)
    stable: int | None
    candidate: int | None
    share: float
    shadow_share: float
    step: int  # 1-based, of ``steps``
    steps: int
    started_at: float | None
    next_evaluation_at: float | None
    compared: int
    evidence: EvidenceFigures | None
    verdict: Verdict | None
    refused: dict[int, Refusal]
    history: list[Decision]
    policy: Policy


def report(state: RolloutState | None, evidence: Evidence | None, model: str) -> RolloutReport:
    """The report of ``model`` (``state`` None: nothing stored yet)."""
    if state is None:
        policy = Policy()
        return RolloutReport(
            model=model, running=False, mode=policy.mode, stable=None, candidate=None,
            share=0.0, shadow_share=0.0, step=0, steps=0, started_at=None,
            next_evaluation_at=None, compared=0, evidence=None, verdict=None, refused={},
            history=[], policy=policy,
        )  # fmt: skip
    return RolloutReport(
        model=state.model,
        running=state.running,
        mode=state.mode if state.running else state.policy.mode,
        stable=state.stable,
        candidate=state.candidate,
        share=state.share,
        shadow_share=state.shadow_share,
        step=state.step + 1 if state.running else 0,
        steps=state.steps if state.running else 0,
        started_at=state.started_at,
        next_evaluation_at=state.next_evaluation_at if state.running else None,
        compared=evidence.compared if evidence is not None else 0,
        evidence=figures(evidence) if evidence is not None else None,
        verdict=state.last_verdict,
        refused=dict(state.refused),
        history=list(reversed(state.history)),
        policy=state.policy,
    )


def figures(evidence: Evidence) -> EvidenceFigures:
    pairs = evidence.pairs
    return EvidenceFigures(
        stable=_version(evidence.stable_version, evidence.stable),
        candidate=_version(evidence.candidate_version, evidence.candidate),
        pairs=PairFigures(
            rows=pairs.rows,
            agreement=pairs.agreements / pairs.rows if pairs.rows else None,
            labelled=pairs.labelled,
            stable_only_right=pairs.stable_only,
            candidate_only_right=pairs.candidate_only,
        ),
    )


def _version(version: int, counts: VersionCounts) -> VersionFigures:
    answered = counts.answered
    p95 = histogram_quantile(counts.latency, LATENCY_EDGES, 0.95, 0.0)
    return VersionFigures(
        version=version,
        rows=counts.rows,
        error_rate=counts.errors / counts.rows if counts.rows else None,
        mean_confidence=counts.confidence_sum / answered if answered else None,
        accuracy=counts.correct / counts.labelled if counts.labelled else None,
        labelled=counts.labelled,
        predicted_distribution=[c / answered for c in counts.classes] if answered else [],
        p95_compute_ms=p95[1] * 1e3 if p95 is not None else None,
    )
