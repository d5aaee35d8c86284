"""Pure functions from a rollout's evidence and policy to promote, roll back or continue.

Every rule answers one question, "is the candidate worse than allowed?", with a one-sided
test, and has a planned sample size (its ``min_samples``, or for accuracy the labels a power
calculation asks for). The design is the textbook group-sequential one (Haybittle-Peto):

- before the planned size, a rule fails only on overwhelming evidence (``early_stop_z``, 3.0:
  p < 0.0013 per look), so a broken model is stopped after tens of rows while the many early
  looks add almost nothing to the false-alarm rate;
- at the planned size, it fails at the nominal level (``confidence_level``, 0.95), and
  otherwise passes: the size is chosen so that the harm the rule names is caught with the
  policy's ``power`` (0.8);
- no rule decides on fewer than :data:`EARLY_MIN` samples: below that the normal
  approximations are not trusted (and the first batches after a load are the least typical).

While one rule waits for its samples the others keep being tested at the nominal level on
growing evidence. Repeated looks can only add false *rollbacks* (a pass needs the planned
look to be clean; a failure at any look stops), so the errors they add are on the safe side.

A verdict is ``rollback`` as soon as any rule fails; ``promote`` once the candidate computed
``min_samples`` rows (in the current canary step) and every rule passed or does not apply;
otherwise ``continue``. ``promote`` means "this step passed": the state machine widens the
canary or makes the candidate stable.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Literal

import msgspec

from model_repository.predictions import js_distance
from serving.rollout.evidence import LATENCY_EDGES, Evidence
from serving.rollout.policy import Policy
from serving.rollout.stats import (
    g_test,
    histogram_quantile,
    labels_paired,
    labels_unpaired,
    mcnemar_z,
    mean_difference,
    newcombe,
    paired_mean,
    two_proportion_z,
    upper_tail,
    wilson,
    z_for,
)

#: The fewest samples any rule decides on, early or not.
EARLY_MIN = 30
#: Until stable has 100 labels, the accuracy sample size assumes this accuracy (an MNIST MLP's).
ASSUMED_ACCURACY = 0.98
#: Until 100 rows are labelled for both, the paired sample size assumes this discordance.
ASSUMED_DISCORDANCE = 0.03
#: Labels or rows from which an observed accuracy or discordance replaces the assumption.
_OBSERVED_FROM = 100

Action = Literal["promote", "rollback", "continue"]


class Status(enum.StrEnum):
    PASS = "pass"  # tested at its planned size and not worse than allowed
    FAIL = "fail"  # worse than allowed: roll back
    PENDING = "pending"  # not enough samples yet; blocks a promotion
    SKIPPED = "skipped"  # disabled, or does not apply to this evidence; never blocks


class RuleResult(msgspec.Struct, frozen=True, kw_only=True):
    """One rule's outcome: ``value`` against ``threshold`` over ``samples`` of ``needed``."""

    rule: str
    status: Status
    value: float | None
    threshold: float
    samples: int
    needed: int
    reason: str


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome with every rule's result and a one-line reason (logs, span events, report)."""

    action: Action
    reason: str
    compared: int
    rules: tuple[RuleResult, ...]


@dataclass(frozen=True, slots=True)
class _Levels:
    nominal: float  # z at the planned look
    early: float  # z before it
    power: float  # z of the power the sizes are computed for

    def z(self, samples: int, needed: int) -> float:
        return self.nominal if samples >= needed else self.early


def judge(evidence: Evidence, policy: Policy, *, step_compared: int | None = None) -> Verdict:
    """The verdict on ``evidence`` under ``policy``.

    ``step_compared``: compared predictions since the current canary step began (None: all of
    them); a step passes only after ``min_samples`` of its own.
    """
    levels = _Levels(
        nominal=z_for(policy.confidence_level),
        early=policy.early_stop_z,
        power=z_for(policy.power),
    )
    results = tuple(
        rule(evidence, policy, levels)
        for rule in (agreement, accuracy, confidence, distribution, errors, latency)
    )
    compared = evidence.compared
    failed = [r for r in results if r.status is Status.FAIL]
    if failed:
        return Verdict(
            action="rollback",
            reason="; ".join(r.reason for r in failed),
            compared=compared,
            rules=results,
        )
    in_step = compared if step_compared is None else step_compared
    if in_step < policy.min_samples:
        return Verdict(
            action="continue",
            reason=f"{in_step} of {policy.min_samples} compared predictions",
            compared=compared,
            rules=results,
        )
    pending = [r for r in results if r.status is Status.PENDING]
    if pending:
        return Verdict(
            action="continue",
            reason="waiting for " + "; ".join(r.reason for r in pending),
            compared=compared,
            rules=results,
        )
    passed = [r.rule for r in results if r.status is Status.PASS]
    return Verdict(
        action="promote",
        reason=f"{', '.join(passed) or 'no rule'} passed over {compared} compared predictions",
        compared=compared,
        rules=results,
    )


def _skipped(rule: str, threshold: float, reason: str) -> RuleResult:
    return RuleResult(
        rule=rule,
        status=Status.SKIPPED,
        value=None,
        threshold=threshold,
        samples=0,
        needed=0,
        reason=f"{rule}: {reason}",
    )


def _staged(
    rule: str,
    *,
    harmed: bool,
    value: float | None,
    threshold: float,
    samples: int,
    needed: int,
    detail: str,
) -> RuleResult:
    """FAIL when harmed (on at least EARLY_MIN samples), else PASS at the planned size, else
    PENDING. ``harmed`` must have been tested at the z for ``samples`` (``_Levels.z``)."""
    if harmed and samples >= EARLY_MIN:
        status = Status.FAIL
        if samples < needed:
            detail += " (early, on overwhelming evidence)"
    elif samples >= needed:
        status = Status.PASS
    else:
        status = Status.PENDING
        detail = f"{detail}; {samples} of {needed}"
    return RuleResult(
        rule=rule,
        status=status,
        value=value,
        threshold=threshold,
        samples=samples,
        needed=needed,
        reason=f"{rule}: {detail}",
    )


def agreement(evidence: Evidence, policy: Policy, levels: _Levels) -> RuleResult:
    """Fails when even the Wilson upper bound of the agreement is below ``min_agreement``."""
    rule = policy.rules.agreement
    if not rule.enabled:
        return _skipped("agreement", rule.min_agreement, "disabled in the policy")
    pairs = evidence.pairs
    n = pairs.rows
    if n == 0:
        return _skipped(
            "agreement", rule.min_agreement, "no rows computed by both versions to compare"
        )
    needed = rule.min_samples or policy.min_samples
    agree = pairs.agreements
    _, upper = wilson(agree, n, levels.z(n, needed))
    detail = f"agreement {agree / n:.4f} over {n} rows (upper bound {upper:.4f}, floor "
    detail += f"{rule.min_agreement})"
    if upper < rule.min_agreement:
        detail += _top_disagreement(evidence)
    return _staged(
        "agreement",
        harmed=upper < rule.min_agreement,
        value=agree / n,
        threshold=rule.min_agreement,
        samples=n,
        needed=needed,
        detail=detail,
    )


def _top_disagreement(evidence: Evidence) -> str:
    """The most frequent (stable class -> candidate class) change: names a swap at once."""
    k = evidence.classes
    cells = [
        (count, i // k, i % k)
        for i, count in enumerate(evidence.pairs.confusion)
        if i // k != i % k and count
    ]
    if not cells:
        return ""
    count, stable, candidate = max(cells)
    return f"; most often stable {stable} -> candidate {candidate} ({count} rows)"


def accuracy(evidence: Evidence, policy: Policy, levels: _Levels) -> RuleResult:
    """Fails when the candidate's accuracy from labels is significantly below stable's.

    Paired (labels that score both versions): McNemar's test. Unpaired (each label scores the
    version that answered): the pooled two-proportion test. Either is sized to catch a drop of
    ``detectable_drop`` with the policy's power (``stats.labels_paired``/``labels_unpaired``).
    """
    rule = policy.rules.accuracy
    drop = rule.detectable_drop
    if not rule.enabled:
        return _skipped("accuracy", drop, "disabled in the policy")
    pairs = evidence.pairs
    if pairs.labelled:
        n = pairs.labelled
        worse, better = pairs.stable_only, pairs.candidate_only
        discordance = (worse + better) / n if n >= _OBSERVED_FROM else ASSUMED_DISCORDANCE
        needed = rule.min_labels or labels_paired(discordance, drop, levels.nominal, levels.power)
        statistic = mcnemar_z(better, worse)
        gap = (better - worse) / n
        detail = f"candidate minus stable accuracy {gap:+.4f} over {n} labels scoring both"
    else:
        candidate, stable = evidence.candidate, evidence.stable
        n = min(candidate.labelled, stable.labelled)
        if n == 0 and not rule.required:
            return _skipped("accuracy", drop, "no labels yet; promotion does not wait for them")
        stable_accuracy = (
            stable.correct / stable.labelled
            if stable.labelled >= _OBSERVED_FROM
            else ASSUMED_ACCURACY
        )
        needed = rule.min_labels or labels_unpaired(
            stable_accuracy, drop, levels.nominal, levels.power
        )
        statistic = two_proportion_z(
            candidate.correct, candidate.labelled, stable.correct, stable.labelled
        )
        gap = (
            candidate.correct / candidate.labelled - stable.correct / stable.labelled if n else 0.0
        )
        detail = (
            f"candidate minus stable accuracy {gap:+.4f} over {candidate.labelled} and "
            f"{stable.labelled} labels"
        )
    result = _staged(
        "accuracy",
        harmed=statistic < -levels.z(n, needed),
        value=gap,
        threshold=drop,
        samples=n,
        needed=needed,
        detail=detail + f" (z {statistic:+.2f})",
    )
    if result.status is Status.PENDING and not rule.required:
        return msgspec.structs.replace(
            result,
            status=Status.SKIPPED,
            reason=result.reason + "; promotion does not wait for labels (required = false)",
        )
    return result


def confidence(evidence: Evidence, policy: Policy, levels: _Levels) -> RuleResult:
    """Fails when the mean confidence shifted by significantly more than ``max_shift``.

    Paired rows: the mean of the per-row differences (same inputs, so the spread of input
    difficulty cancels out); otherwise Welch's difference of the two means.
    """
    rule = policy.rules.confidence
    shift = rule.max_shift
    if not rule.enabled:
        return _skipped("confidence", shift, "disabled in the policy")
    needed = rule.min_samples or policy.min_samples
    pairs, candidate, stable = evidence.pairs, evidence.candidate, evidence.stable
    if pairs.rows >= 2:
        n = pairs.rows
        difference, error = paired_mean(
            pairs.confidence_difference_sum, pairs.confidence_difference_squares, n
        )
    elif candidate.answered >= 2 and stable.answered >= 2:
        n = candidate.answered
        difference, error = mean_difference(
            candidate.confidence_sum,
            candidate.confidence_squares,
            candidate.answered,
            stable.confidence_sum,
            stable.confidence_squares,
            stable.answered,
        )
    else:
        return _staged(
            "confidence",
            harmed=False,
            value=None,
            threshold=shift,
            samples=0,
            needed=needed,
            detail="no answers to compare yet",
        )
    excess = abs(difference) - shift
    statistic = excess / error if error > 0 else math.copysign(math.inf, excess)
    return _staged(
        "confidence",
        harmed=statistic > levels.z(n, needed),
        value=difference,
        threshold=shift,
        samples=n,
        needed=needed,
        detail=f"mean confidence shift {difference:+.4f} over {n} rows (allowed ±{shift})",
    )


def distribution(evidence: Evidence, policy: Policy, levels: _Levels) -> RuleResult:
    """Fails when the JS distance of the predicted classes is above ``max_js`` and a G-test
    finds the two distributions different (so a large distance from few rows is not enough)."""
    rule = policy.rules.distribution
    if not rule.enabled:
        return _skipped("distribution", rule.max_js, "disabled in the policy")
    needed = rule.min_samples or policy.min_samples
    candidate, stable = evidence.candidate, evidence.stable
    n = candidate.answered
    distance = js_distance(candidate.classes, stable.classes)
    if math.isnan(distance):
        return _staged(
            "distribution",
            harmed=False,
            value=None,
            threshold=rule.max_js,
            samples=0,
            needed=needed,
            detail="no answers to compare yet",
        )
    _, _, p = g_test(candidate.classes, stable.classes)
    alpha = upper_tail(levels.z(n, needed))
    return _staged(
        "distribution",
        harmed=distance > rule.max_js and p < alpha,
        value=distance,
        threshold=rule.max_js,
        samples=n,
        needed=needed,
        detail=f"JS distance {distance:.3f} of predicted classes over {n} rows "
        f"(limit {rule.max_js}, G-test p {p:.2g})",
    )


def errors(evidence: Evidence, policy: Policy, levels: _Levels) -> RuleResult:
    """Fails when the lower bound of (candidate error rate - stable's) exceeds ``max_increase``
    (Newcombe's interval: exact enough with zero errors on a side)."""
    rule = policy.rules.errors
    if not rule.enabled:
        return _skipped("errors", rule.max_increase, "disabled in the policy")
    needed = rule.min_samples or policy.min_samples
    candidate, stable = evidence.candidate, evidence.stable
    n = candidate.rows
    if n == 0 or stable.rows == 0:
        return _staged(
            "errors",
            harmed=False,
            value=None,
            threshold=rule.max_increase,
            samples=n,
            needed=needed,
            detail="no rows to compare yet",
        )
    low, _ = newcombe(candidate.errors, n, stable.errors, stable.rows, levels.z(n, needed))
    increase = candidate.errors / n - stable.errors / stable.rows
    return _staged(
        "errors",
        harmed=low > rule.max_increase,
        value=increase,
        threshold=rule.max_increase,
        samples=n,
        needed=needed,
        detail=f"error rate {candidate.errors}/{n} against stable's "
        f"{stable.errors}/{stable.rows} (increase {increase:+.4f}, allowed {rule.max_increase})",
    )


def latency(evidence: Evidence, policy: Policy, levels: _Levels) -> RuleResult:
    """Fails when the candidate's p95 compute time, at its lower bound, is more than
    ``max_p95_ratio`` times stable's at its upper bound (order-statistic bounds).

    Batches both versions computed on the same rows are compared when there are any (shadow):
    the same batch sizes on both sides. Otherwise each version's own batches (canary: the
    candidate's batches are smaller, so the ratio flatters it; the docs say so).
    """
    rule = policy.rules.latency
    if not rule.enabled:
        return _skipped("latency", rule.max_p95_ratio, "disabled in the policy")
    needed = rule.min_batches
    pairs = evidence.pairs
    if sum(pairs.candidate_latency):
        candidate_counts, stable_counts = pairs.candidate_latency, pairs.stable_latency
    else:
        candidate_counts, stable_counts = evidence.candidate.latency, evidence.stable.latency
    n = min(sum(candidate_counts), sum(stable_counts))
    z = levels.z(n, needed)
    mine = histogram_quantile(candidate_counts, LATENCY_EDGES, 0.95, z)
    theirs = histogram_quantile(stable_counts, LATENCY_EDGES, 0.95, z)
    if mine is None or theirs is None:
        return _staged(
            "latency",
            harmed=False,
            value=None,
            threshold=rule.max_p95_ratio,
            samples=0,
            needed=needed,
            detail="no batches to compare yet",
        )
    ratio = mine[1] / theirs[1]
    low_ratio = mine[0] / theirs[2]
    return _staged(
        "latency",
        harmed=low_ratio > rule.max_p95_ratio,
        value=ratio,
        threshold=rule.max_p95_ratio,
        samples=n,
        needed=needed,
        detail=f"p95 compute {mine[1] * 1e3:.3f} ms against stable's {theirs[1] * 1e3:.3f} ms "
        f"(ratio {ratio:.2f}, at least {low_ratio:.2f}; limit {rule.max_p95_ratio})",
    )
