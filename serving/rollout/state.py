"""The rollout state of one model, and its transitions as pure functions.

    no rollout (stable only) --new version, mode shadow/canary--> rollout running
    rollout running --judge: promote, last step / admin promote--> no rollout (candidate stable)
    rollout running --judge: promote, more canary steps--> rollout running (wider share)
    rollout running --judge or admin: roll back--> no rollout (candidate refused, with why)
    rollout running --newer version--> rollout running (the newer one is the candidate)
    rollout running --candidate removed--> no rollout
    (mode replace: a new version becomes stable at once, as before issue 27)

Every transition appends a :class:`Decision` (what, by whom, why, the rules' results) to a
bounded history. ``store.RolloutStore`` runs these functions inside one SQLite write
transaction, so that all workers see one sequence of states. Nothing here reads a clock or a
file: ``now`` and the versions present are arguments, which is what makes them testable.

Which version is stable when nothing is known (a first start, or a state file that is gone):
``policy.stable`` if it is present, else the newest version in mode ``replace``, else the newest
but one, with the newest as candidate. A version thus never becomes stable without a verdict
because a restart lost the state; at worst a rollout runs again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from serving.rollout.judge import RuleResult, Verdict
from serving.rollout.policy import Mode, Policy

#: Decisions kept in the state (the report lists them; older ones are in the logs).
HISTORY = 50

DecisionAction = Literal[
    "served",  # a stable version was chosen with nothing known before
    "replaced",  # a version became stable without a rollout (mode replace, or stable removed)
    "started",  # a candidate began its rollout
    "stepped",  # a canary step passed: the share widened
    "promoted",  # the candidate became stable
    "rolled_back",  # the candidate was refused
    "superseded",  # a newer version took the candidate's place (not refused)
    "aborted",  # the rollout ended without a verdict (candidate removed)
    "restarted",  # the rollout began again from its first step (mode changed)
    "resumed",  # after a restart, the rollout goes on with its evidence
    "reverted",  # after a restart, the rollout was ended safely and starts over
]
DecidedBy = Literal["judge", "admin", "repository", "policy", "restart"]


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """Why a version is refused; it stays so until its files change (``fingerprint``)."""

    reason: str
    at: float
    fingerprint: str = ""


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    action: DecisionAction
    by: DecidedBy
    stable: int | None
    candidate: int | None
    share: float
    reason: str
    rules: tuple[RuleResult, ...] = ()


class RolloutState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the workers must agree on about one model's rollout."""

    model: str
    stable: int | None = None
    candidate: int | None = None
    #: Counts rollouts; keys their evidence (a stale worker's flush is refused) and salts the
    #: canary routing (each rollout exposes a different set of clients).
    rollout_id: int = 0
    mode: Mode = "replace"  # the mode the running rollout started in
    candidate_fingerprint: str = ""
    step: int = 0
    started_at: float | None = None
    step_started_at: float | None = None
    step_started_compared: int = 0
    next_evaluation_at: float = 0.0
    updated_at: float = 0.0
    boot: str = ""  # the start of the service that last wrote it (see ``restart``)
    policy: Policy = msgspec.field(default_factory=Policy)
    last_verdict: Verdict | None = None
    refused: dict[int, Refusal] = msgspec.field(default_factory=dict)
    history: tuple[Decision, ...] = ()

    @property
    def running(self) -> bool:
        return self.candidate is not None

    @property
    def share(self) -> float:
        """Share of requests the candidate answers (0 unless a canary is running)."""
        if not self.running or self.mode != "canary":
            return 0.0
        shares = self.policy.shares
        return shares[min(self.step, len(shares) - 1)]

    @property
    def shadow_share(self) -> float:
        """Share of requests the candidate also computes, unseen (0 unless shadowing)."""
        return self.policy.shadow_share if self.running and self.mode == "shadow" else 0.0

    @property
    def steps(self) -> int:
        return len(self.policy.shares) if self.mode == "canary" else 1

    @property
    def served(self) -> tuple[int, ...]:
        """The versions to keep loaded, stable first."""
        return tuple(v for v in (self.stable, self.candidate) if v is not None)

    @property
    def salt(self) -> str:
        return f"{self.model}/{self.rollout_id}"


def _decide(
    state: RolloutState,
    now: float,
    action: DecisionAction,
    by: DecidedBy,
    reason: str,
    *,
    rules: tuple[RuleResult, ...] = (),
    **changes: Any,
) -> RolloutState:
    """``state`` with ``changes``, and a decision describing the result appended."""
    after = msgspec.structs.replace(state, updated_at=now, **changes)
    decision = Decision(
        at=now,
        action=action,
        by=by,
        stable=after.stable,
        candidate=after.candidate,
        share=after.share,
        reason=reason,
        rules=rules,
    )
    return msgspec.structs.replace(after, history=(*state.history, decision)[-HISTORY:])


def _ended() -> dict[str, Any]:
    """The fields that say no rollout is running."""
    return {"candidate": None, "candidate_fingerprint": "", "step": 0, "step_started_at": None}


def _start(
    state: RolloutState, candidate: int, fingerprint: str, now: float, reason: str
) -> RolloutState:
    return _decide(
        state,
        now,
        "started",
        "repository",
        reason,
        candidate=candidate,
        candidate_fingerprint=fingerprint,
        rollout_id=state.rollout_id + 1,
        mode=state.policy.mode,
        step=0,
        started_at=now,
        step_started_at=now,
        step_started_compared=0,
        # Give every worker one interval to record and flush before the first judgement.
        next_evaluation_at=now + state.policy.evaluation_interval_s,
        last_verdict=None,
    )


def initial(model: str, policy: Policy, now: float, boot: str = "") -> RolloutState:
    """A state that knows nothing yet (``observe`` then picks stable from the repository)."""
    return RolloutState(model=model, policy=policy, updated_at=now, boot=boot)


def observe(
    state: RolloutState, present: Mapping[int, str], policy: Policy, now: float
) -> RolloutState:
    """Bring ``state`` in line with the repository and the policy (every version poll).

    ``present``: version -> fingerprint of its files, for every version folder there (the
    fingerprint lets a refused version be retried once it is re-published with other files).
    """
    s = msgspec.structs.replace(state, policy=policy)
    refused = {v: r for v, r in s.refused.items() if v in present and present[v] == r.fingerprint}
    if refused != s.refused:
        s = msgspec.structs.replace(s, refused=refused)
    available = sorted(v for v in present if v not in refused)

    if s.candidate is not None and present.get(s.candidate) != s.candidate_fingerprint:
        why = "removed from" if s.candidate not in present else "re-published in"
        s = _decide(
            s, now, "aborted", "repository",
            f"candidate v{s.candidate} was {why} the repository", **_ended(),
        )  # fmt: skip
    if s.stable is not None and s.stable not in present:
        if s.candidate is not None:
            s = _decide(
                s, now, "replaced", "repository",
                f"stable v{s.stable} was removed from the repository; candidate "
                f"v{s.candidate} serves without a verdict",
                stable=s.candidate, **_ended(),
            )  # fmt: skip
        else:
            s = msgspec.structs.replace(s, stable=None)
    if s.stable is None:
        if not available:
            return s
        stable, why = _first_stable(available, policy)
        s = _decide(s, now, "served", "repository", why, stable=stable)

    if s.candidate is not None and policy.mode != s.mode:
        if policy.mode == "replace":
            return _decide(
                s, now, "replaced", "policy",
                f"the policy's mode is now replace: v{s.candidate} replaces v{s.stable}",
                stable=s.candidate, **_ended(),
            )  # fmt: skip
        s = _start(
            s, s.candidate, s.candidate_fingerprint, now,
            f"the policy's mode changed from {s.mode} to {policy.mode}: v{s.candidate} "
            f"starts its rollout again",
        )  # fmt: skip

    assert s.stable is not None  # chosen above, since versions are available
    newest = available[-1]
    if newest <= max(s.stable, s.candidate or 0):
        return s
    if s.candidate is not None:
        s = _decide(
            s, now, "superseded", "repository",
            f"v{newest} was published: it replaces candidate v{s.candidate}", **_ended(),
        )  # fmt: skip
    if policy.mode == "replace":
        return _decide(
            s, now, "replaced", "repository",
            f"v{newest} replaces v{s.stable} (mode replace)", stable=newest,
        )  # fmt: skip
    return _start(
        s, newest, present[newest], now,
        f"v{newest} is the candidate against stable v{s.stable} ({policy.mode})",
    )  # fmt: skip


def _first_stable(available: list[int], policy: Policy) -> tuple[int, str]:
    if policy.stable is not None and policy.stable in available:
        return policy.stable, f"v{policy.stable} is stable as rollout.toml pins it"
    if policy.mode == "replace" or len(available) == 1:
        return available[-1], f"v{available[-1]} is stable: the newest version"
    return available[-2], (
        f"v{available[-2]} is stable: with nothing known, the newest version v{available[-1]} "
        f"must earn it in a rollout"
    )


def apply_verdict(
    state: RolloutState, verdict: Verdict, now: float, *, by: DecidedBy = "judge"
) -> RolloutState:
    """Act on the judge's verdict: go on, widen the canary, promote, or roll back."""
    if state.candidate is None:
        return state
    s = msgspec.structs.replace(
        state,
        last_verdict=verdict,
        updated_at=now,
        next_evaluation_at=now + state.policy.evaluation_interval_s,
    )
    if verdict.action == "continue":
        return s
    if verdict.action == "rollback":
        return rollback(s, now, verdict.reason, by=by, rules=verdict.rules)
    if s.mode == "canary" and s.step + 1 < s.steps:
        before = s.share
        s = msgspec.structs.replace(
            s, step=s.step + 1, step_started_at=now, step_started_compared=verdict.compared
        )
        return _decide(
            s, now, "stepped", by,
            f"step {s.step} of {s.steps} passed ({verdict.reason}): share {before:g} -> "
            f"{s.share:g}",
            rules=verdict.rules,
        )  # fmt: skip
    return promote(s, now, verdict.reason, by=by, rules=verdict.rules)


def promote(
    state: RolloutState,
    now: float,
    reason: str,
    *,
    by: DecidedBy = "admin",
    rules: tuple[RuleResult, ...] = (),
) -> RolloutState:
    """The candidate becomes stable (whatever step it is at)."""
    if state.candidate is None:
        return state
    return _decide(
        state, now, "promoted", by,
        f"v{state.candidate} promoted over v{state.stable}: {reason}", rules=rules,
        stable=state.candidate, **_ended(),
    )  # fmt: skip


def rollback(
    state: RolloutState,
    now: float,
    reason: str,
    *,
    by: DecidedBy = "admin",
    rules: tuple[RuleResult, ...] = (),
) -> RolloutState:
    """The candidate stops getting traffic and is refused, with ``reason``, until its files
    change (``/v2/repository/index`` shows it UNAVAILABLE with the reason)."""
    if state.candidate is None:
        return state
    refusal = Refusal(
        reason=f"rolled back by the {by}: {reason}",
        at=now,
        fingerprint=state.candidate_fingerprint,
    )
    return _decide(
        state, now, "rolled_back", by,
        f"v{state.candidate} rolled back, v{state.stable} stays stable: {reason}", rules=rules,
        refused={**state.refused, state.candidate: refusal}, **_ended(),
    )  # fmt: skip


StartAction = Literal["fresh", "joined", "idle", "resumed", "reverted"]


class StartOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker's start found: say it in the log (``action`` and ``reason``).

    ``fresh``: nothing was stored; ``joined``: another worker of this start already decided;
    ``idle``: no rollout was running; ``resumed`` / ``reverted``: see :func:`restart`.
    """

    state: RolloutState
    action: StartAction
    reason: str


def restart(
    stored: RolloutState | None,
    present: Mapping[int, str],
    policy: Policy,
    now: float,
    *,
    model: str,
    boot: str,
    resume_window_s: float,
    unreadable: str | None = None,
) -> StartOutcome:
    """What a start of the service does with the state the last one left.

    ``boot`` names this start of the service (the same in all its workers, new at each
    start): the first worker to arrive decides, the others join. A running rollout resumes
    (its evidence, step and share) when its state is recent (written within
    ``resume_window_s``), its versions are still the same files and the policy's mode is
    the same; otherwise it reverts: stable only, and the candidate starts its rollout again
    from the first step with no evidence. Either way the decision is in the history.
    """
    if stored is not None and stored.boot == boot:
        return StartOutcome(state=stored, action="joined", reason="this start already decided")
    if stored is None:
        state = observe(initial(model, policy, now, boot), present, policy, now)
        if unreadable is not None:
            return StartOutcome(
                state=state,
                action="reverted",
                reason=f"the stored state could not be read ({unreadable}); started from the "
                "repository as on a first start",
            )
        return StartOutcome(state=state, action="fresh", reason="no stored state")
    stored = msgspec.structs.replace(stored, boot=boot)
    if not stored.running:
        state = observe(stored, present, policy, now)
        return StartOutcome(state=state, action="idle", reason="no rollout was running")
    problem = _why_not_resume(stored, present, policy, now, resume_window_s)
    if problem is None:
        resumed = _decide(
            stored, now, "resumed", "restart",
            f"v{stored.candidate} against v{stored.stable} resumes ({stored.mode}, step "
            f"{stored.step + 1} of {stored.steps}, "
            f"{stored.last_verdict.compared if stored.last_verdict else 0} compared)",
            next_evaluation_at=now + policy.evaluation_interval_s,
        )  # fmt: skip
        state = observe(resumed, present, policy, now)
        return StartOutcome(state=state, action="resumed", reason=resumed.history[-1].reason)
    reverted = _decide(
        stored, now, "reverted", "restart",
        f"the rollout of v{stored.candidate} did not resume ({problem}): v{stored.stable} "
        "alone serves, and the candidate starts over",
        **_ended(),
    )  # fmt: skip
    state = observe(reverted, present, policy, now)
    return StartOutcome(state=state, action="reverted", reason=reverted.history[-1].reason)


def _why_not_resume(
    state: RolloutState,
    present: Mapping[int, str],
    policy: Policy,
    now: float,
    resume_window_s: float,
) -> str | None:
    age = now - state.updated_at
    if age > resume_window_s:
        return (
            f"its state was last written {age:.0f} s ago, beyond the {resume_window_s:g} s "
            "resume window: its evidence may no longer describe the traffic"
        )
    if state.candidate is None or state.candidate not in present:
        return f"candidate v{state.candidate} is no longer in the repository"
    if present[state.candidate] != state.candidate_fingerprint:
        return f"candidate v{state.candidate}'s files changed"
    if state.stable not in present:
        return f"stable v{state.stable} is no longer in the repository"
    if policy.mode != state.mode:
        return f"the policy's mode changed from {state.mode} to {policy.mode}"
    return None
