"""The workers' shared SQLite file: created with its folder, in WAL mode, the schema applied
idempotently, and a second connection (another worker) sees the first one's committed rows."""

from __future__ import annotations

from pathlib import Path

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
