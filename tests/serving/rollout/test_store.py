"""The shared SQLite file: transitions persist, evidence adds up per rollout, one evaluation
per interval, admin calls, and a damaged state said as such."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest

from serving.rollout.policy import Policy
from serving.rollout.report import report
from serving.rollout.store import RolloutStore
from tests.serving.rollout.builders import counts, evidence, good_shadow

POLICY = Policy(mode="shadow", evaluation_interval_s=5.0)
PRESENT = {1: "a", 2: "b"}
T0 = 1_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "rollout.sqlite3"


def opened(path: Path) -> RolloutStore:
    """A worker's connection whose start has been decided (a shadow rollout of v2 over v1)."""
    store = RolloutStore(path, "mnist")
    store.start(PRESENT, POLICY, T0, boot="boot-1", resume_window_s=300)
    return store


def test_a_second_connection_sees_the_first_one_s_state(path: Path) -> None:
    first = opened(path)
    second = RolloutStore(path, "mnist")
    state = second.state()
    assert state is not None
    assert (state.stable, state.candidate, state.mode) == (1, 2, "shadow")
    assert second.start(PRESENT, POLICY, T0 + 1, boot="boot-1", resume_window_s=300).action == (
        "joined"
    )
    first.close()
    second.close()


def test_the_state_is_readable_json_in_the_file(path: Path) -> None:
    opened(path).close()
    with sqlite3.connect(path) as db:
        (body,) = db.execute("SELECT body FROM rollout_state WHERE model = 'mnist'").fetchone()
    assert json.loads(body)["candidate"] == 2


def test_evidence_adds_up_per_worker_and_across_workers(path: Path) -> None:
    store = opened(path)
    assert store.add_evidence("w1", 1, good_shadow(100), T0 + 1)
    assert store.add_evidence("w1", 1, good_shadow(50), T0 + 2)
    assert store.add_evidence("w2", 1, good_shadow(30), T0 + 2)
    merged = store.evidence()
    assert merged is not None
    assert (merged.compared, merged.pairs.rows) == (180, 180)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM rollout_evidence").fetchone()[0] == 2


def test_evidence_of_another_rollout_is_refused(path: Path) -> None:
    store = opened(path)
    assert not store.add_evidence("w1", 0, good_shadow(100), T0 + 1)  # a stale rollout id
    assert not store.add_evidence("w1", 1, good_shadow(100, candidate=3), T0 + 1)
    assert store.evidence() is None


def test_one_evaluation_per_interval(path: Path) -> None:
    store = opened(path)
    assert store.evaluate(T0 + 1).verdict is None  # the first interval is for recording
    first = store.evaluate(T0 + 5)
    assert first.verdict is not None
    assert first.verdict.action == "continue"
    again = store.evaluate(T0 + 6)  # another worker, a moment later
    assert again.verdict is None
    assert again.state == first.state


def test_a_due_evaluation_promotes_on_the_merged_evidence(path: Path) -> None:
    store = opened(path)
    store.add_evidence("w1", 1, good_shadow(600), T0 + 1)
    store.add_evidence("w2", 1, good_shadow(600), T0 + 1)
    evaluation = store.evaluate(T0 + 5)
    assert evaluation.verdict is not None
    assert (evaluation.verdict.action, evaluation.verdict.compared) == ("promote", 1200)
    state = evaluation.state
    assert state is not None
    assert (state.stable, state.candidate, state.history[-1].action) == (2, None, "promoted")
    # The last rollout's evidence stays for the report; a worker's late flush is refused.
    assert store.evidence() is not None
    assert not store.add_evidence("w1", 1, good_shadow(10), T0 + 6)


def test_a_bad_candidate_is_refused_with_its_reason(path: Path) -> None:
    store = opened(path)
    broken = evidence(counts(2000), counts(1000, errors=50))
    store.add_evidence("w1", 1, broken, T0 + 1)
    state = store.evaluate(T0 + 5).state
    assert state is not None
    assert (state.stable, state.candidate) == (1, None)
    assert "errors" in state.refused[2].reason
    # Still refused on the next poll of the same files.
    assert store.observe(PRESENT, POLICY, T0 + 10).candidate is None


def test_a_new_rollout_drops_the_evidence_of_the_one_before(path: Path) -> None:
    store = opened(path)
    store.add_evidence("w1", 1, good_shadow(100), T0 + 1)
    state = store.observe({**PRESENT, 3: "c"}, POLICY, T0 + 2)
    assert (state.candidate, state.rollout_id) == (3, 2)
    assert store.evidence(rollout_id=1) is None
    assert store.evidence() is None


def test_a_canary_step_counts_its_own_samples(path: Path) -> None:
    store = RolloutStore(path, "mnist")
    canary = Policy(mode="canary", canary_steps=(0.5,), evaluation_interval_s=5.0)
    store.start(PRESENT, canary, T0, boot="b", resume_window_s=300)
    store.add_evidence("w1", 1, good_shadow(1200), T0 + 1)
    state = store.evaluate(T0 + 5).state
    assert state is not None
    assert (state.step, state.share, state.step_started_compared) == (1, 0.5, 1200)
    store.add_evidence("w1", 1, good_shadow(500), T0 + 6)
    evaluation = store.evaluate(T0 + 10)
    assert evaluation.verdict is not None
    assert evaluation.verdict.reason == "500 of 1000 compared predictions"
    store.add_evidence("w1", 1, good_shadow(500), T0 + 11)
    state = store.evaluate(T0 + 15).state
    assert state is not None
    assert (state.stable, state.candidate) == (2, None)


def test_admin_calls_go_through_the_store(path: Path) -> None:
    store = opened(path)
    state = store.rollback(T0 + 1, "operator says no")
    assert state is not None
    assert state.refused[2].reason == "rolled back by the admin: operator says no"
    assert RolloutStore(path, "mnist").promote(T0 + 2, "nothing to promote") == state


def test_a_damaged_state_is_reported_and_replaced_on_the_next_start(path: Path) -> None:
    opened(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE rollout_state SET body = '{\"model\": 7'")
    store = RolloutStore(path, "mnist")
    assert store.state() is None
    outcome = store.start(PRESENT, POLICY, T0 + 10, boot="boot-2", resume_window_s=300)
    assert outcome.action == "reverted"
    assert "could not be read" in outcome.reason
    assert store.state() == outcome.state


def test_models_do_not_share_a_state(path: Path) -> None:
    opened(path)
    assert RolloutStore(path, "fashion").state() is None


def test_the_report_is_json_with_the_newest_decision_first(path: Path) -> None:
    store = opened(path)
    store.add_evidence("w1", 1, good_shadow(300), T0 + 1)
    store.evaluate(T0 + 5)
    body = msgspec.json.decode(
        msgspec.json.encode(report(store.state(), store.evidence(), "mnist"))
    )
    assert (body["running"], body["stable"], body["candidate"], body["mode"]) == (
        True,
        1,
        2,
        "shadow",
    )
    assert body["evidence"]["pairs"]["agreement"] == 1.0
    assert body["verdict"]["action"] == "continue"
    assert [d["action"] for d in body["history"]] == ["started", "served"]
    assert {r["rule"] for r in body["verdict"]["rules"]} >= {"agreement", "accuracy", "latency"}


def test_the_report_before_anything_is_stored() -> None:
    body = msgspec.json.decode(msgspec.json.encode(report(None, None, "mnist")))
    assert (body["model"], body["running"], body["history"]) == ("mnist", False, [])
