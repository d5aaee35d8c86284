"""Real processes (``multiprocessing`` spawn, as uvicorn's workers) sharing one rollout file:
two workers agree on one decision, and a restart resumes or reverts, and says which."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from queue import Empty

import msgspec
import pytest

from serving.rollout.state import RolloutState
from serving.rollout.store import RolloutStore
from tests.serving.rollout import workers
from tests.serving.rollout.builders import good_shadow

SPAWN = multiprocessing.get_context("spawn")
WAIT_S = 120  # for spawned interpreters on a loaded 2-core machine: a bound, not a target


@pytest.mark.parametrize(("kind", "decision"), [("good", "promoted"), ("bad", "rolled_back")])
def test_two_workers_agree_on_one_decision(tmp_path: Path, kind: str, decision: str) -> None:
    """Each worker alone holds 600 rows, under the 1,000 a promotion needs: the promotion
    can only come from the merged evidence, and exactly one worker makes it."""
    path = str(tmp_path / "rollout.sqlite3")
    ready, done = SPAWN.Barrier(2), SPAWN.Barrier(2)
    results: multiprocessing.Queue[tuple[str, str, list[str], bytes]] = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=workers.decide, args=(path, name, kind, 6, 100, ready, done, results))
        for name in ("w1", "w2")
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=WAIT_S) for _ in processes]
    except Empty:
        pytest.fail("a worker did not report")
    finally:
        for process in processes:
            stop(process)
    assert [process.exitcode for process in processes] == [0, 0]

    starts = sorted(start for _, start, _, _ in reports)
    assert starts == ["fresh", "joined"]  # one decided the start, the other joined it
    finals = {final for _, _, _, final in reports}
    assert len(finals) == 1  # both read the same state
    state = msgspec.json.decode(finals.pop(), type=RolloutState)
    assert not state.running
    assert Counter[str](d.action for d in state.history)[decision] == 1
    made = Counter(action for _, _, verdicts, _ in reports for action in verdicts)
    assert made["promote" if kind == "good" else "rollback"] == 1  # by one worker only
    if kind == "good":
        assert state.stable == 2
        assert state.last_verdict is not None
        assert state.last_verdict.compared >= 1000  # both workers' evidence
    else:
        assert state.stable == 1
        assert "errors" in state.refused[2].reason


def stop(process: multiprocessing.process.BaseProcess) -> None:
    """Wait for ``process``; kill it if it outlives the bound (a worker whose peer died waits
    at a barrier forever, and pytest would wait for it at exit)."""
    process.join(timeout=WAIT_S)
    if process.is_alive():
        process.kill()
        process.join()


def run(target: Callable[..., object], *args: object) -> int | None:
    process = SPAWN.Process(target=target, args=args)
    process.start()
    stop(process)
    return process.exitcode


def test_a_restart_during_a_rollout_resumes_with_its_evidence(tmp_path: Path) -> None:
    path = tmp_path / "rollout.sqlite3"
    assert run(workers.run_partially, str(path), "boot-1", 600) == 0

    store = RolloutStore(path, workers.MODEL)  # the next start of the service
    outcome = store.start(
        workers.PRESENT, workers.POLICY, time.time(), boot="boot-2",
        resume_window_s=workers.RESUME_WINDOW_S,
    )  # fmt: skip
    assert outcome.action == "resumed"
    assert "resumes" in outcome.reason
    assert outcome.state.history[-1].action == "resumed"
    evidence = store.evidence()
    assert evidence is not None
    assert evidence.compared == 600  # what the previous start recorded still counts

    store.add_evidence("w1", outcome.state.rollout_id, good_shadow(600), time.time())
    evaluation = store.evaluate(time.time() + workers.POLICY.evaluation_interval_s)
    assert evaluation.verdict is not None
    assert (evaluation.verdict.action, evaluation.verdict.compared) == ("promote", 1200)


def test_a_restart_after_the_resume_window_reverts_and_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "rollout.sqlite3"
    assert run(workers.run_partially, str(path), "boot-1", 600) == 0

    store = RolloutStore(path, workers.MODEL)
    later = time.time() + workers.RESUME_WINDOW_S + 60
    outcome = store.start(
        workers.PRESENT, workers.POLICY, later, boot="boot-2",
        resume_window_s=workers.RESUME_WINDOW_S,
    )  # fmt: skip
    assert outcome.action == "reverted"
    assert "resume window" in outcome.reason
    state = outcome.state
    assert [d.action for d in state.history[-2:]] == ["reverted", "started"]
    assert (state.stable, state.candidate, state.rollout_id) == (1, 2, 2)
    assert store.evidence() is None  # the candidate starts over with no evidence


def test_a_worker_killed_inside_a_transaction_blocks_no_one(tmp_path: Path) -> None:
    path = tmp_path / "rollout.sqlite3"
    assert run(workers.run_partially, str(path), "boot-1", 600) == 0
    locked = SPAWN.Event()
    holder = SPAWN.Process(target=workers.hold_write_lock, args=(str(path), locked))
    holder.start()
    try:
        assert locked.wait(timeout=WAIT_S)
    finally:
        holder.kill()  # SIGKILL: no rollback, no close
        holder.join(timeout=WAIT_S)

    store = RolloutStore(path, workers.MODEL)
    outcome = store.start(
        workers.PRESENT, workers.POLICY, time.time(), boot="boot-2",
        resume_window_s=workers.RESUME_WINDOW_S,
    )  # fmt: skip
    assert outcome.action == "resumed"
    evidence = store.evidence()
    assert evidence is not None
    assert evidence.compared == 600
