"""The SQLite files the workers of one service share (the feedback window, the rollout state).

stdlib ``sqlite3`` in WAL mode: readers never wait for the writer, and each worker process holds
one connection, used from any thread under its owner's lock. ``synchronous=NORMAL`` is safe in
WAL mode (a power cut can lose the last transactions, never corrupt the file); every change is
an explicit ``BEGIN IMMEDIATE`` transaction, so autocommit is off (``isolation_level=None``
means the connection issues no implicit BEGIN of its own).
"""

from __future__ import annotations

import sqlite3
import time
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
    _switch_to_wal(db)
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode, retrying while another worker is switching it.

    When workers open a fresh file at once, SQLite may answer the switch with "database is
    locked" at once, without the busy handler's wait (4 start-ups in 20 with 8 processes
    before this loop), or decline it by answering the old mode. WAL is a property of the file:
    once one worker has switched it, the others' attempts succeed without a lock.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.001
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
        else:
            if mode in ("wal", "memory"):  # "memory": an in-memory database has no WAL
                return
            if time.monotonic() + pause > deadline:
                raise sqlite3.OperationalError(f"journal mode stays {mode!r}, not 'wal'")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
