"""The SQLite files the workers of one service share (the feedback window, the rollout state).

stdlib ``sqlite3`` in WAL mode: readers never wait for the writer, and each worker process holds
one connection, used from any thread under its owner's lock. ``synchronous=NORMAL`` is safe in
WAL mode (a power cut can lose the last transactions, never corrupt the file); every change is
an explicit ``BEGIN IMMEDIATE`` transaction, so autocommit is off (``isolation_level=None``
means the connection issues no implicit BEGIN of its own).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: Seconds a transaction waits for another worker's write lock before failing.
BUSY_TIMEOUT_S = 10.0


def open_shared(path: Path | None, schema: str) -> sqlite3.Connection:
    """A connection to ``path`` (created with its folder; in memory when None) with ``schema``
    applied (its statements must be idempotent: ``CREATE ... IF NOT EXISTS``)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        str(path) if path is not None else ":memory:",
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,  # explicit BEGIN IMMEDIATE in the owners
        check_same_thread=False,  # the owner's lock serialises its threads
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
