"""The workers' shared SQLite file: created with its folder, in WAL mode, the schema applied
idempotently, a second connection (another worker) sees the first one's committed rows, and
workers opening a fresh file at once all get it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from serving import shared_sqlite
from serving.shared_sqlite import open_shared

SCHEMA = "CREATE TABLE IF NOT EXISTS seen (id INTEGER PRIMARY KEY, what TEXT NOT NULL);"


def test_a_file_is_shared_by_two_connections_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "shared.sqlite3"
    first, second = open_shared(path, SCHEMA), open_shared(path, SCHEMA)  # schema twice: fine
    try:
        assert path.exists()
        assert first.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        first.execute("BEGIN IMMEDIATE")
        first.execute("INSERT INTO seen (what) VALUES ('label')")
        assert second.execute("SELECT count(*) FROM seen").fetchone() == (0,)  # not committed
        first.execute("COMMIT")
        assert second.execute("SELECT what FROM seen").fetchall() == [("label",)]
    finally:
        first.close()
        second.close()


def test_no_path_is_a_private_database_in_memory() -> None:
    one, other = open_shared(None, SCHEMA), open_shared(None, SCHEMA)
    try:
        one.execute("INSERT INTO seen (what) VALUES ('x')")  # autocommit off: no implicit BEGIN
        assert one.execute("SELECT count(*) FROM seen").fetchone() == (1,)
        assert other.execute("SELECT count(*) FROM seen").fetchone() == (0,)
    finally:
        one.close()
        other.close()


class _LockedTwice(sqlite3.Connection):
    """A real connection whose first two switches to WAL meet a worker mid-switch (the race
    answers "database is locked" at once; it cannot be provoked on demand)."""

    refused = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "PRAGMA journal_mode=WAL" and self.refused < 2:
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")
        return super().execute(sql, *args)


def test_the_switch_to_wal_is_retried_while_another_worker_makes_it(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "shared.sqlite3", factory=_LockedTwice)
    try:
        shared_sqlite._switch_to_wal(db)
        assert db.refused == 2
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()


def test_a_lock_that_outlasts_the_timeout_fails_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shared.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE seen (id INTEGER PRIMARY KEY)")
    holder.execute("BEGIN EXCLUSIVE")  # a rollback-journal file another process has to itself
    monkeypatch.setattr(shared_sqlite, "BUSY_TIMEOUT_S", 0.05)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_shared(path, SCHEMA)
    finally:
        holder.close()


def _open_at_once(path: Path, workers: int) -> list[BaseException]:
    """``workers`` threads open ``path`` together; what they raised."""
    start, errors = threading.Barrier(workers), list[BaseException]()

    def worker() -> None:
        start.wait()
        try:
            open_shared(path, SCHEMA).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_sixteen_workers_open_a_fresh_file_at_once(tmp_path: Path) -> None:
    """Before the retry, 1 round in 50 of this failed (and 4 in 20 with 8 processes)."""
    for round_ in range(50):
        assert _open_at_once(tmp_path / f"round-{round_}.sqlite3", 16) == [], f"round {round_}"
