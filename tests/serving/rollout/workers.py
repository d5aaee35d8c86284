"""Entry points of the spawned worker processes of ``test_workers.py`` (a module of its own,
so that a spawned child imports it without importing the tests)."""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path

import msgspec

from serving.rollout.evidence import Evidence
from serving.rollout.policy import Policy
from serving.rollout.store import RolloutStore
from tests.serving.rollout.builders import counts, evidence, good_shadow

MODEL = "mnist"
PRESENT = {1: "a", 2: "b"}
#: A short interval, so that the two workers race for many evaluations.
POLICY = Policy(mode="shadow", evaluation_interval_s=0.01)
RESUME_WINDOW_S = 300.0


def chunk(kind: str, rows: int) -> Evidence:
    if kind == "good":
        return good_shadow(rows)
    # A candidate whose batches fail on 5 % of its rows.
    return evidence(counts(rows), counts(rows, errors=rows // 20))


def decide(
    path: str,
    name: str,
    kind: str,
    chunks: int,
    rows: int,
    ready: Barrier,
    done: Barrier,
    results: Queue[tuple[str, str, list[str], bytes]],
) -> None:
    """One worker: start, flush evidence chunk by chunk evaluating after each, then keep
    evaluating until the rollout is decided; report what it saw."""
    store = RolloutStore(Path(path), MODEL)
    ready.wait()  # both start together and race for the start decision
    outcome = store.start(PRESENT, POLICY, time.time(), boot="boot-1", resume_window_s=300)
    rollout_id = outcome.state.rollout_id
    verdicts: list[str] = []
    for _ in range(chunks):
        store.add_evidence(name, rollout_id, chunk(kind, rows), time.time())
        evaluation = store.evaluate(time.time())
        if evaluation.verdict is not None:
            verdicts.append(evaluation.verdict.action)
    for _ in range(3000):  # a bound, not a timing expectation: normally a few rounds
        evaluation = store.evaluate(time.time())
        if evaluation.verdict is not None:
            verdicts.append(evaluation.verdict.action)
        if evaluation.state is None or not evaluation.state.running:
            break
        time.sleep(0.01)
    done.wait()  # both read the final state after every write
    results.put((name, outcome.action, verdicts, msgspec.json.encode(store.state())))
    store.close()


def run_partially(path: str, boot: str, rows: int) -> None:
    """A start of the service that records ``rows`` rows of evidence, judges once (not
    enough to decide), and ends."""
    store = RolloutStore(Path(path), MODEL)
    now = time.time()
    outcome = store.start(PRESENT, POLICY, now, boot=boot, resume_window_s=RESUME_WINDOW_S)
    store.add_evidence("w1", outcome.state.rollout_id, good_shadow(rows), now)
    store.evaluate(now + POLICY.evaluation_interval_s)
    store.close()


def hold_write_lock(path: str, locked: Event) -> None:
    """A worker that dies inside a write transaction: it takes the lock and waits to be
    killed."""
    store = RolloutStore(Path(path), MODEL)
    store._db.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(600)
