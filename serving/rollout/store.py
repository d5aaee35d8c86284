"""The rollout's shared file: one state per model and every worker's evidence, in SQLite.

Like ``serving.feedback.store``: stdlib ``sqlite3`` in WAL mode, one connection per worker
process, short transactions. Every change is one ``BEGIN IMMEDIATE`` transaction that reads
the state, applies a pure transition from ``state`` and writes it back, so the workers see
one sequence of states and never a lost update.

One decider at a time, without a lease: :meth:`RolloutStore.evaluate` takes the write lock,
and only if the state's ``next_evaluation_at`` has come does it merge the evidence, judge and
write the verdict with the next due time. A worker arriving a moment later finds it not due
and reads the decision. The judgement is pure NumPy over a few KB (well under a millisecond),
so holding the lock through it costs the others nothing noticeable; a worker that dies mid-
transaction leaves no lock behind (SQLite rolls it back), which a lease row would.

Tables:

- ``rollout_state``: one row per model, the :class:`state.RolloutState` as JSON (readable
  with the ``sqlite3`` shell).
- ``rollout_evidence``: one row per (model, rollout, worker), the worker's evidence so far;
  each flush adds its delta to its own row. A flush for a rollout that is no longer the
  running one (the worker has not seen the change yet) is refused, so evidence about one
  candidate never counts for the next. Rows of earlier rollouts are deleted when a new one
  starts; the last rollout's stay for the report.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from serving.rollout import state as transitions
from serving.rollout.evidence import Evidence
from serving.rollout.judge import Verdict, judge
from serving.rollout.policy import Policy
from serving.rollout.state import DecidedBy, Decision, RolloutState, StartOutcome
from serving.shared_sqlite import open_shared

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollout_state (
    model TEXT PRIMARY KEY, body BLOB NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_evidence (
    model TEXT NOT NULL,
    rollout_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    body BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (model, rollout_id, worker)
);
"""

_state_decoder = msgspec.json.Decoder(RolloutState)
_evidence_decoder = msgspec.json.Decoder(Evidence)
Judge = Callable[[Evidence, Policy, int], Verdict]


def _judge(evidence: Evidence, policy: Policy, step_compared: int) -> Verdict:
    return judge(evidence, policy, step_compared=step_compared)


class Evaluation(msgspec.Struct, frozen=True):
    """The state after an evaluation; ``verdict`` is None when this call did not judge (no
    rollout, not due yet, or another worker judged this interval)."""

    state: RolloutState | None
    verdict: Verdict | None


class RolloutStore:
    """One worker's connection to the shared file, for one model. Thread-safe (one lock)."""

    def __init__(
        self, path: Path | None, model: str, *, classes: int = 10, judge: Judge = _judge
    ) -> None:
        self.model = model
        self.classes = classes
        self._judge = judge
        self._lock = threading.Lock()
        self._made: list[Decision] = []
        self._db = open_shared(path, _SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ reading
    def state(self) -> RolloutState | None:
        """The current state (None: none stored, or unreadable)."""
        with self._lock:
            return self._read()[0]

    def evidence(self, rollout_id: int | None = None) -> Evidence | None:
        """Every worker's evidence of ``rollout_id`` (default: the current one), merged."""
        with self._lock:
            if rollout_id is None:
                current = self._read()[0]
                if current is None:
                    return None
                rollout_id = current.rollout_id
            return self._merged(rollout_id)

    # ------------------------------------------------------------------ changing
    def start(
        self,
        present: Mapping[int, str],
        policy: Policy,
        now: float,
        *,
        boot: str,
        resume_window_s: float,
    ) -> StartOutcome:
        """At a worker's start: resume or revert what the last start left (``state.restart``)."""
        with self._lock, self._transaction():
            stored, problem = self._read()
            outcome = transitions.restart(
                stored,
                present,
                policy,
                now,
                model=self.model,
                boot=boot,
                resume_window_s=resume_window_s,
                unreadable=problem,
            )
            if outcome.action != "joined":
                self._write(outcome.state, stored)
            return outcome

    def observe(self, present: Mapping[int, str], policy: Policy, now: float) -> RolloutState:
        """After a version poll: new candidates, removed versions, policy changes."""
        with self._lock, self._transaction():
            stored, _ = self._read()
            current = stored or transitions.initial(self.model, policy, now)
            changed = transitions.observe(current, present, policy, now)
            self._write(changed, stored)
            return changed

    def add_evidence(self, worker: str, rollout_id: int, evidence: Evidence, now: float) -> bool:
        """Add a worker's flush to its row; False (dropped) unless ``rollout_id`` is running
        with the same two versions."""
        with self._lock, self._transaction():
            current, _ = self._read()
            if (
                current is None
                or current.rollout_id != rollout_id
                or (current.stable, current.candidate)
                != (evidence.stable_version, evidence.candidate_version)
            ):
                return False
            row = self._db.execute(
                "SELECT body FROM rollout_evidence WHERE model = ? AND rollout_id = ? "
                "AND worker = ?",
                (self.model, rollout_id, worker),
            ).fetchone()
            total = _evidence_decoder.decode(row[0]).merged(evidence) if row else evidence
            self._db.execute(
                "INSERT INTO rollout_evidence (model, rollout_id, worker, body, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, rollout_id, worker) DO UPDATE SET "
                "body = excluded.body, updated_at = excluded.updated_at",
                (self.model, rollout_id, worker, msgspec.json.encode(total), now),
            )
            return True

    def evaluate(self, now: float) -> Evaluation:
        """Judge the merged evidence if an evaluation is due; at most one worker per interval."""
        with self._lock, self._transaction():
            current, _ = self._read()
            if (
                current is None
                or current.stable is None
                or current.candidate is None
                or now < current.next_evaluation_at
            ):
                return Evaluation(current, None)
            evidence = self._merged(current.rollout_id) or Evidence.empty(
                current.stable, current.candidate, self.classes
            )
            verdict = self._judge(
                evidence, current.policy, evidence.compared - current.step_started_compared
            )
            after = transitions.apply_verdict(current, verdict, now)
            self._write(after, current)
            return Evaluation(after, verdict)

    def promote(self, now: float, reason: str, *, by: DecidedBy = "admin") -> RolloutState | None:
        """Admin: the candidate becomes stable now."""
        return self._admin(lambda s: transitions.promote(s, now, reason, by=by))

    def rollback(self, now: float, reason: str, *, by: DecidedBy = "admin") -> RolloutState | None:
        """Admin (or the repository, for a candidate that cannot load): the candidate is
        refused now."""
        return self._admin(lambda s: transitions.rollback(s, now, reason, by=by))

    def take_made(self) -> list[Decision]:
        """The decisions this connection's transactions made since the last call, oldest
        first: each decision is made by exactly one worker, which logs and counts it."""
        with self._lock:
            made, self._made = self._made, []
            return made

    def _admin(self, change: Callable[[RolloutState], RolloutState]) -> RolloutState | None:
        with self._lock, self._transaction():
            current, _ = self._read()
            if current is None:
                return None
            after = change(current)
            self._write(after, current)
            return after

    # ------------------------------------------------------------------ internals
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _read(self) -> tuple[RolloutState | None, str | None]:
        """The stored state, or None and why it could not be decoded."""
        row = self._db.execute(
            "SELECT body FROM rollout_state WHERE model = ?", (self.model,)
        ).fetchone()
        if row is None:
            return None, None
        try:
            return _state_decoder.decode(row[0]), None
        except msgspec.MsgspecError as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def _write(self, after: RolloutState, before: RolloutState | None) -> None:
        if after == before:
            return
        # Transitions keep the earlier decisions' objects and append new ones.
        known = {id(decision) for decision in before.history} if before is not None else set()
        self._made.extend(d for d in after.history if id(d) not in known)
        self._db.execute(
            "INSERT INTO rollout_state (model, body, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (model) DO UPDATE SET body = excluded.body, "
            "updated_at = excluded.updated_at",
            (self.model, msgspec.json.encode(after), after.updated_at),
        )
        if before is None or after.rollout_id != before.rollout_id:
            self._db.execute(
                "DELETE FROM rollout_evidence WHERE model = ? AND rollout_id != ?",
                (self.model, after.rollout_id),
            )

    def _merged(self, rollout_id: int) -> Evidence | None:
        rows = self._db.execute(
            "SELECT body FROM rollout_evidence WHERE model = ? AND rollout_id = ? ORDER BY worker",
            (self.model, rollout_id),
        ).fetchall()
        total: Evidence | None = None
        for (body,) in rows:
            part = _evidence_decoder.decode(body)
            total = part if total is None else total.merged(part)
        return total


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is not None:
            self._db.execute("ROLLBACK")
            return
        try:
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) leaves the transaction open, and every
            # later BEGIN on this connection would fail: end it here.
            self._db.execute("ROLLBACK")
            raise
