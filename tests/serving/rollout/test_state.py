"""The rollout state machine: every transition, and what a restart does with a running rollout."""

from __future__ import annotations

import msgspec
import pytest

from serving.rollout.judge import Action, Verdict
from serving.rollout.policy import Policy
from serving.rollout.state import (
    HISTORY,
    RolloutState,
    apply_verdict,
    initial,
    observe,
    promote,
    restart,
    rollback,
)

SHADOW = Policy(mode="shadow", evaluation_interval_s=5.0)
CANARY = Policy(mode="canary", canary_share=0.05, canary_steps=(0.25, 1.0))
T0 = 1_000_000.0


def start(present: dict[int, str], policy: Policy = SHADOW, now: float = T0) -> RolloutState:
    return observe(initial("mnist", policy, now), present, policy, now)


def verdict(action: Action, compared: int = 1000) -> Verdict:
    return Verdict(action=action, reason=f"judged {action}", compared=compared, rules=())


def actions(state: RolloutState) -> list[str]:
    return [d.action for d in state.history]


# ---------------------------------------------------------------------- first start
def test_first_start_in_replace_mode_serves_the_newest_as_today() -> None:
    state = start({1: "a", 2: "b"}, Policy())
    assert (state.stable, state.candidate, actions(state)) == (2, None, ["served"])


def test_first_start_in_a_rollout_mode_never_trusts_the_newest_without_a_verdict() -> None:
    state = start({1: "a", 2: "b"})
    assert (state.stable, state.candidate, state.mode) == (1, 2, "shadow")
    assert actions(state) == ["served", "started"]
    assert "must earn it" in state.history[0].reason
    assert state.next_evaluation_at == T0 + SHADOW.evaluation_interval_s


def test_first_start_with_one_version_serves_it() -> None:
    state = start({1: "a"})
    assert (state.stable, state.candidate) == (1, None)


def test_a_pinned_stable_in_the_policy_wins_on_a_first_start() -> None:
    policy = Policy(mode="shadow", stable=1)
    state = start({1: "a", 2: "b", 3: "c"}, policy)
    assert (state.stable, state.candidate) == (1, 3)


def test_an_empty_repository_serves_nothing_and_says_nothing() -> None:
    state = start({})
    assert (state.stable, state.candidate, state.history) == (None, None, ())


# ---------------------------------------------------------------------- the repository moves
def test_a_new_version_in_replace_mode_replaces_stable_at_once() -> None:
    state = observe(start({1: "a"}, Policy()), {1: "a", 2: "b"}, Policy(), T0 + 1)
    assert (state.stable, state.candidate, actions(state)[-1]) == (2, None, "replaced")


def test_a_new_version_in_shadow_mode_becomes_the_candidate() -> None:
    state = observe(start({1: "a"}), {1: "a", 2: "b"}, SHADOW, T0 + 1)
    assert (state.stable, state.candidate, state.rollout_id) == (1, 2, 1)
    assert (state.share, state.shadow_share, state.served) == (0.0, 1.0, (1, 2))


def test_a_newer_version_supersedes_the_candidate_without_refusing_it() -> None:
    state = start({1: "a", 2: "b"})
    state = observe(state, {1: "a", 2: "b", 3: "c"}, SHADOW, T0 + 1)
    assert (state.stable, state.candidate, state.rollout_id) == (1, 3, 2)
    assert actions(state)[-2:] == ["superseded", "started"]
    assert state.refused == {}


def test_a_removed_candidate_ends_the_rollout() -> None:
    state = observe(start({1: "a", 2: "b"}), {1: "a"}, SHADOW, T0 + 1)
    assert (state.stable, state.candidate, actions(state)[-1]) == (1, None, "aborted")


def test_a_re_published_candidate_starts_its_rollout_again_with_no_evidence() -> None:
    state = start({1: "a", 2: "b"})
    state = observe(state, {1: "a", 2: "b2"}, SHADOW, T0 + 1)
    assert actions(state)[-2:] == ["aborted", "started"]
    assert (state.candidate, state.candidate_fingerprint, state.rollout_id) == (2, "b2", 2)


def test_stable_removed_during_a_rollout_leaves_the_candidate_serving() -> None:
    state = observe(start({1: "a", 2: "b"}), {2: "b"}, SHADOW, T0 + 1)
    assert (state.stable, state.candidate, actions(state)[-1]) == (2, None, "replaced")


def test_switching_the_policy_to_replace_mid_rollout_makes_the_candidate_stable() -> None:
    state = observe(start({1: "a", 2: "b"}), {1: "a", 2: "b"}, Policy(), T0 + 1)
    assert (state.stable, state.candidate, actions(state)[-1]) == (2, None, "replaced")


def test_switching_shadow_to_canary_restarts_the_rollout_from_its_first_step() -> None:
    state = observe(start({1: "a", 2: "b"}), {1: "a", 2: "b"}, CANARY, T0 + 1)
    assert (state.mode, state.candidate, state.step, state.rollout_id) == ("canary", 2, 0, 2)
    assert state.share == 0.05


def test_observing_an_unchanged_repository_changes_nothing() -> None:
    state = start({1: "a", 2: "b"})
    assert observe(state, {1: "a", 2: "b"}, SHADOW, T0 + 1) == state


# ---------------------------------------------------------------------- verdicts
def test_continue_records_the_verdict_and_the_next_evaluation_only() -> None:
    state = start({1: "a", 2: "b"})
    after = apply_verdict(state, verdict("continue", 10), T0 + 5)
    assert after.last_verdict == verdict("continue", 10)
    assert after.next_evaluation_at == T0 + 10
    assert after.history == state.history


def test_canary_steps_widen_the_share_then_promote() -> None:
    state = start({1: "a", 2: "b"}, CANARY)
    assert (state.share, state.steps) == (0.05, 3)
    state = apply_verdict(state, verdict("promote", 1000), T0 + 5)
    assert (state.step, state.share, state.step_started_compared) == (1, 0.25, 1000)
    assert actions(state)[-1] == "stepped"
    assert "0.05 -> 0.25" in state.history[-1].reason
    state = apply_verdict(state, verdict("promote", 2100), T0 + 10)
    assert (state.step, state.share) == (2, 1.0)
    state = apply_verdict(state, verdict("promote", 3300), T0 + 15)
    assert (state.stable, state.candidate, state.share) == (2, None, 0.0)
    assert actions(state)[-1] == "promoted"


def test_a_rolled_back_candidate_is_refused_with_its_reason_until_its_files_change() -> None:
    state = apply_verdict(start({1: "a", 2: "b"}), verdict("rollback"), T0 + 5)
    assert (state.stable, state.candidate, actions(state)[-1]) == (1, None, "rolled_back")
    assert state.refused[2].reason == "rolled back by the judge: judged rollback"
    # The next polls see the same files: it stays refused, no new rollout.
    assert observe(state, {1: "a", 2: "b"}, SHADOW, T0 + 10) == state
    # Re-published with other files: tried again.
    again = observe(state, {1: "a", 2: "b2"}, SHADOW, T0 + 15)
    assert (again.candidate, again.refused, actions(again)[-1]) == (2, {}, "started")


def test_a_refused_version_does_not_block_a_newer_one() -> None:
    state = apply_verdict(start({1: "a", 2: "b"}), verdict("rollback"), T0 + 5)
    state = observe(state, {1: "a", 2: "b", 3: "c"}, SHADOW, T0 + 10)
    assert (state.stable, state.candidate, sorted(state.refused)) == (1, 3, [2])


def test_admin_promote_skips_the_remaining_canary_steps() -> None:
    state = promote(start({1: "a", 2: "b"}, CANARY), T0 + 1, "looks good to me")
    assert (state.stable, state.candidate) == (2, None)
    assert state.history[-1].by == "admin"
    assert "looks good to me" in state.history[-1].reason


def test_admin_rollback_refuses_the_candidate() -> None:
    state = rollback(start({1: "a", 2: "b"}), T0 + 1, "customer complaint")
    assert state.refused[2].reason == "rolled back by the admin: customer complaint"


def test_admin_calls_without_a_rollout_change_nothing() -> None:
    state = start({1: "a"})
    assert promote(state, T0, "x") == state
    assert rollback(state, T0, "x") == state


def test_history_is_bounded() -> None:
    state = start({1: "a"})
    for version in range(2, 2 + HISTORY):
        state = observe(state, {v: str(v) for v in range(1, version + 1)}, SHADOW, T0 + version)
    assert len(state.history) == HISTORY
    assert state.history[-1].candidate == 1 + HISTORY


def test_the_state_round_trips_through_json() -> None:
    state = apply_verdict(start({1: "a", 2: "b"}, CANARY), verdict("promote"), T0 + 5)
    state = rollback(state, T0 + 6, "why not")
    decoded = msgspec.json.decode(msgspec.json.encode(state), type=RolloutState)
    assert decoded == state


# ---------------------------------------------------------------------- restart
def running(policy: Policy = CANARY) -> RolloutState:
    """A canary at its second step, last written at T0 + 5 by start ``old``."""
    state = start({1: "a", 2: "b"}, policy)
    state = apply_verdict(state, verdict("promote", 1000), T0 + 5)
    return msgspec.structs.replace(state, boot="old")


def again(
    stored: RolloutState | None,
    present: dict[int, str],
    policy: Policy = CANARY,
    now: float = T0 + 60,
    boot: str = "new",
) -> tuple[RolloutState, str, str]:
    outcome = restart(stored, present, policy, now, model="mnist", boot=boot, resume_window_s=300)
    return outcome.state, outcome.action, outcome.reason


def test_a_recent_rollout_resumes_with_its_step_and_says_so() -> None:
    stored = running()
    state, action, reason = again(stored, {1: "a", 2: "b"})
    assert action == "resumed"
    assert (state.rollout_id, state.step, state.share) == (stored.rollout_id, 1, 0.25)
    assert state.boot == "new"
    assert actions(state)[-1] == "resumed"
    assert "step 2 of 3" in reason


def test_another_worker_of_the_same_start_joins_without_deciding_again() -> None:
    stored = running()
    state, action, _ = again(stored, {1: "a", 2: "b"}, boot="old")
    assert (action, state) == ("joined", stored)


@pytest.mark.parametrize(
    ("present", "policy", "now", "says"),
    [
        ({1: "a", 2: "b"}, CANARY, T0 + 5 + 301, "resume window"),
        ({1: "a", 2: "b2"}, CANARY, T0 + 60, "files changed"),
        ({1: "a", 2: "b"}, SHADOW, T0 + 60, "mode changed"),
    ],
)
def test_a_rollout_that_cannot_resume_reverts_and_starts_over(
    present: dict[int, str], policy: Policy, now: float, says: str
) -> None:
    stored = running()
    state, action, reason = again(stored, present, policy, now)
    assert action == "reverted"
    assert says in reason
    # Stable alone served, then the candidate's rollout starts again from its first step
    # with fresh evidence (a new rollout id).
    assert actions(state)[-2:] == ["reverted", "started"]
    assert (state.stable, state.candidate, state.step) == (1, 2, 0)
    assert state.rollout_id == stored.rollout_id + 1


def test_a_reverted_rollout_whose_candidate_is_gone_leaves_stable_alone() -> None:
    state, action, reason = again(running(), {1: "a"})
    assert (action, state.stable, state.candidate) == ("reverted", 1, None)
    assert "no longer in the repository" in reason


def test_no_stored_state_is_a_fresh_start() -> None:
    state, action, _ = again(None, {1: "a", 2: "b"})
    assert (action, state.stable, state.candidate, state.boot) == ("fresh", 1, 2, "new")


def test_an_unreadable_state_reverts_to_what_the_repository_says() -> None:
    outcome = restart(
        None, {1: "a", 2: "b"}, CANARY, T0, model="mnist", boot="new", resume_window_s=300,
        unreadable="DecodeError: truncated",
    )  # fmt: skip
    assert outcome.action == "reverted"
    assert "truncated" in outcome.reason
    assert (outcome.state.stable, outcome.state.candidate) == (1, 2)


def test_a_restart_with_no_rollout_running_is_idle() -> None:
    stored = msgspec.structs.replace(start({1: "a"}), boot="old")
    state, action, _ = again(stored, {1: "a"})
    assert (action, state.stable, state.boot) == ("idle", 1, "new")
