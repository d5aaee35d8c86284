"""The service's shared quality state: labelled predictions and every worker's drift window.

One SQLite database (stdlib, WAL mode) in a file every worker opens: feedback accepted by any
worker lands in the same tables, so ``/v1/quality`` and the quality and drift gauges describe the
whole service whichever worker answers. The CLI creates the file before workers start (like
``PROMETHEUS_MULTIPROC_DIR``); an app built without a path keeps a private in-memory database.

Three tables, each bounded:

- ``seen``: the tag of every labelled prediction id still within the feedback horizon, so a
  second label for the same id is a duplicate, whichever worker gets it. At most ``max_ids``
  rows: past that the oldest are evicted and the *floor* rises to their issue time; ids issued
  at or before the floor then count as unknown, so an evicted id can never be counted twice.
- ``labelled``: the last ``window`` (true, predicted) pairs, in arrival order.
- ``windows``: one row per worker with the histogram counts of its drift windows, rewritten on
  every sample; rows older than ``stale_s`` (a dead worker) are ignored and deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from serving.shared_sqlite import open_shared

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (tag BLOB PRIMARY KEY, issued_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_issued ON seen (issued_at);
CREATE TABLE IF NOT EXISTS labelled (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    true_label INTEGER NOT NULL,
    predicted INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    worker INTEGER PRIMARY KEY, updated_at REAL NOT NULL, counts BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Labelled:
    """One piece of feedback joined to its prediction."""

    tag: bytes
    issued_at: int
    true_label: int
    predicted: int
    #: The version that answered (0: unknown), and during a rollout what the other version
    #: answered for the same row (prediction id format 2; serving/feedback/ids.py).
    version: int = 0
    second_predicted: int | None = None
    second_version: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Which of the offered labels were new (in order) and how many were duplicates or stale."""

    accepted: list[Labelled]
    duplicates: int
    unknown: int


class QualityStore:
    """Thread-safe access to the database (one connection, one lock; calls are short)."""

    def __init__(
        self,
        path: Path | None,
        *,
        window: int,
        horizon_s: float,
        max_ids: int,
        stale_s: float = 30.0,
    ) -> None:
        self.window = window
        self.horizon_s = horizon_s
        self.max_ids = max_ids
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._db = open_shared(path, _SCHEMA)
        with self._lock:
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(labelled)")}
            if "version" not in columns:  # a file written before per-version quality
                self._db.execute(
                    "ALTER TABLE labelled ADD COLUMN version INTEGER NOT NULL DEFAULT 0"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ feedback
    def add(self, labelled: Sequence[Labelled], now: float | None = None) -> Outcome:
        """Record new labels; duplicates (already seen, here or by another worker) are skipped."""
        now = time.time() if now is None else now
        accepted: list[Labelled] = []
        duplicates = unknown = 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                floor = self._floor()
                for item in labelled:
                    if item.issued_at <= floor:
                        unknown += 1
                        continue
                    inserted = db.execute(
                        "INSERT OR IGNORE INTO seen (tag, issued_at) VALUES (?, ?)",
                        (item.tag, item.issued_at),
                    ).rowcount
                    if inserted:
                        accepted.append(item)
                    else:
                        duplicates += 1
                db.executemany(
                    "INSERT INTO labelled (true_label, predicted, version) VALUES (?, ?, ?)",
                    [(item.true_label, item.predicted, item.version) for item in accepted],
                )
                self._prune(now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return Outcome(accepted, duplicates, unknown)

    def _floor(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'floor'").fetchone()
        return int(row[0]) if row else -1

    def _prune(self, now: float) -> None:
        db = self._db
        db.execute("DELETE FROM seen WHERE issued_at < ?", (int(now - self.horizon_s),))
        excess = db.execute("SELECT COUNT(*) FROM seen").fetchone()[0] - self.max_ids
        if excess > 0:
            newest_evicted = db.execute(
                "SELECT issued_at FROM seen ORDER BY issued_at LIMIT 1 OFFSET ?", (excess - 1,)
            ).fetchone()[0]
            # Everything issued up to that second goes, so the floor rule stays exact.
            db.execute("DELETE FROM seen WHERE issued_at <= ?", (newest_evicted,))
            db.execute(
                "INSERT INTO meta (name, value) VALUES ('floor', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                (newest_evicted,),
            )
        db.execute(
            "DELETE FROM labelled WHERE seq <= (SELECT MAX(seq) FROM labelled) - ?",
            (self.window,),
        )

    def pairs(
        self, version: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The (true, predicted) labels of the window, oldest first (``version``: only the
        predictions that version answered)."""
        with self._lock:
            if version is None:
                rows = self._db.execute(
                    "SELECT true_label, predicted FROM labelled ORDER BY seq DESC LIMIT ?",
                    (self.window,),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT true_label, predicted FROM labelled WHERE version = ? "
                    "ORDER BY seq DESC LIMIT ?",
                    (version, self.window),
                ).fetchall()
        array = np.asarray(rows[::-1], dtype=np.int64).reshape(-1, 2)
        return array[:, 0], array[:, 1]

    def version(self) -> int:
        """Changes whenever a labelled pair is added (by any worker): a cheap staleness check."""
        with self._lock:
            row = self._db.execute("SELECT MAX(seq) FROM labelled").fetchone()
        return int(row[0]) if row[0] is not None else 0

    def seen_ids(self) -> int:
        with self._lock:
            count: int = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0]
        return count

    # ------------------------------------------------------------------ drift windows
    def put_window(
        self, worker: int, counts: npt.NDArray[np.int64], now: float | None = None
    ) -> None:
        """Replace this worker's drift-window histogram counts (one flat int64 vector)."""
        now = time.time() if now is None else now
        blob = np.ascontiguousarray(counts, dtype=np.int64).tobytes()
        with self._lock:
            self._db.execute(
                "INSERT INTO windows (worker, updated_at, counts) VALUES (?, ?, ?) "
                "ON CONFLICT (worker) DO UPDATE SET updated_at = excluded.updated_at, "
                "counts = excluded.counts",
                (worker, now, blob),
            )

    def service_window(self, size: int, now: float | None = None) -> npt.NDArray[np.int64]:
        """The sum over live workers of their window counts (vectors of ``size``)."""
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("DELETE FROM windows WHERE updated_at < ?", (now - self.stale_s,))
            rows = self._db.execute("SELECT counts FROM windows").fetchall()
        total = np.zeros(size, dtype=np.int64)
        for (blob,) in rows:
            counts = np.frombuffer(blob, dtype=np.int64)
            if counts.size == size:  # a worker of another layout (mid-deploy) is skipped
                total += counts
        return total
