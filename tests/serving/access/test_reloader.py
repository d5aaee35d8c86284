"""Hot rotation of the keys file: real files and symlinks, the reloader driven by its check()
(plus one test of the background poll), the guard it feeds answering as the file says."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from serving.access.guard import Guard
from serving.access.keys import KeysFileError, KeyTable
from serving.access.reloader import KeysReloader, RefusalReason, ReloadOutcome
from serving.access.scopes import Scope

ALICE = "alice-6f1d0b3a9c2e4f58a7d1"
BOB = "bob-2c9e7a1f5b3d4e60c8a4"


def entry(name: str, key: str, scopes: str, extra: str = "") -> str:
    return f'[[keys]]\nname = "{name}"\nkey = "{key}"\nscopes = [{scopes}]\n{extra}\n'


def alice(scopes: str = '"infer"', extra: str = "") -> str:
    return entry("alice", ALICE, scopes, extra)


def bob() -> str:
    return entry("bob", BOB, '"admin"')


def replace(path: Path, text: str) -> None:
    """Write atomically, as the docs ask: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class Watched:
    """A keys file, its reloader and the guard it feeds, with refusals and reloads recorded."""

    def __init__(
        self,
        path: Path,
        text: str | None,
        on_reloaded: Callable[[KeyTable], None] | None = None,
    ) -> None:
        self.path = path
        if text is not None:
            replace(path, text)
        self.refused: list[RefusalReason] = []
        self.reloaded: list[KeyTable] = []
        self.reloader = KeysReloader(
            path,
            on_refused=self.refused.append,
            on_reloaded=on_reloaded or self.reloaded.append,
        )
        self.guard = Guard(self.reloader.load())
        self.reloader.apply = self.guard.use

    def who(self, key: str, scope: Scope = Scope.INFER) -> str | int:
        """The key's name if allowed on ``scope``, else the refusal status."""
        decision = self.guard.check(scope, f"Bearer {key}".encode())
        return decision.key_name if decision.allowed else decision.status


@pytest.fixture
def watched(tmp_path: Path) -> Watched:
    return Watched(tmp_path / "keys.toml", alice())


def test_an_unchanged_file_is_not_reloaded(watched: Watched) -> None:
    assert watched.reloader.check() is ReloadOutcome.UNCHANGED
    replace(watched.path, alice())  # rewritten, same content
    assert watched.reloader.check() is ReloadOutcome.UNCHANGED
    assert watched.reloaded == []


def test_add_a_key_remove_a_key_change_scopes(watched: Watched) -> None:
    assert (watched.who(ALICE), watched.who(BOB, Scope.ADMIN)) == ("alice", 401)

    replace(watched.path, alice() + bob())
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert (watched.who(ALICE), watched.who(BOB, Scope.ADMIN)) == ("alice", "bob")

    replace(watched.path, bob())
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert (watched.who(ALICE), watched.who(BOB, Scope.ADMIN)) == (401, "bob")

    replace(watched.path, alice('"read"') + bob())
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert (watched.who(ALICE), watched.who(ALICE, Scope.READ)) == (403, "alice")
    assert [t.names for t in watched.reloaded] == [("alice", "bob"), ("bob",), ("alice", "bob")]
    assert watched.refused == []


def test_an_invalid_file_is_refused_and_the_old_keys_stay(
    watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    # A valid new key beside a broken entry: nothing of the file is applied.
    broken = alice() + bob() + entry("carol", "carol-key-0123456789", '"everything"')
    replace(watched.path, broken)
    with caplog.at_level(logging.INFO, logger="serving.access.reloader"):
        assert watched.reloader.check() is ReloadOutcome.REFUSED
        assert watched.reloader.check() is ReloadOutcome.UNCHANGED  # counted once, not per poll
    assert (watched.who(ALICE), watched.who(BOB, Scope.ADMIN)) == ("alice", 401)
    assert watched.refused == [RefusalReason.INVALID]
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "keys[2] ('carol')" in record.getMessage()
    assert "the 1 keys in force stay" in record.getMessage()

    # A file that does not parse at all, right after a key: refused, the key not logged.
    replace(watched.path, f'[[keys]]\nname = "bob"\nkey = "{BOB}\nscopes = ["admin"]\n')
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="serving.access.reloader"):
        assert watched.reloader.check() is ReloadOutcome.REFUSED
    assert watched.refused == [RefusalReason.INVALID, RefusalReason.INVALID]
    assert "not valid TOML" in caplog.text
    for secret in (ALICE, BOB, "carol-key-0123456789"):
        assert secret not in caplog.text
        assert secret[:10] not in caplog.text

    # Fixed: applied.
    replace(watched.path, alice() + bob())
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert watched.who(BOB, Scope.ADMIN) == "bob"


def test_a_missing_file_keeps_the_keys_and_its_return_is_noticed(
    watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    watched.path.unlink()
    assert watched.reloader.check() is ReloadOutcome.REFUSED
    assert watched.reloader.check() is ReloadOutcome.UNCHANGED
    assert watched.refused == [RefusalReason.UNREADABLE]
    assert watched.who(ALICE) == "alice"
    with caplog.at_level(logging.INFO, logger="serving.access.reloader"):
        replace(watched.path, alice())  # back as it was
        assert watched.reloader.check() is ReloadOutcome.UNCHANGED
    assert "usable again" in caplog.text
    replace(watched.path, alice() + bob())
    assert watched.reloader.check() is ReloadOutcome.RELOADED


def test_an_edit_in_place_with_the_same_size_and_mtime_is_seen(watched: Watched) -> None:
    """Content is compared, not only stat(): an edit within one timestamp tick counts."""
    before = watched.path.stat()
    # '"infer"' and '"admin"' have the same length: swap one for the other in place.
    text = alice().replace('"infer"', '"admin"')
    assert len(text) == len(alice())
    with watched.path.open("r+") as file:
        file.write(text)
    os.utime(watched.path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = watched.path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert watched.who(ALICE, Scope.ADMIN) == "alice"


def test_a_kubernetes_secret_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """A Secret volume: keys.toml -> ..data/keys.toml, ..data -> ..<timestamp>/; an update
    writes a new timestamped directory and renames a new ..data link over the old one."""
    mount = tmp_path / "secret"
    mount.mkdir()

    def publish(version: str, text: str) -> None:
        directory = mount / f"..2026_01_01_00_00_{version}"
        directory.mkdir()
        (directory / "keys.toml").write_text(text)
        link = mount / "..data_tmp"
        link.symlink_to(directory.name)
        link.replace(mount / "..data")  # rename(2): atomic

    publish("01", alice())
    (mount / "keys.toml").symlink_to("..data/keys.toml")
    watched = Watched(mount / "keys.toml", None)
    assert watched.who(BOB, Scope.ADMIN) == 401

    publish("02", alice() + bob())
    old = mount / "..2026_01_01_00_00_01"
    (old / "keys.toml").unlink()
    old.rmdir()
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert watched.who(BOB, Scope.ADMIN) == "bob"
    assert watched.who(ALICE) == "alice"


def test_rate_limit_buckets_survive_a_reload(tmp_path: Path) -> None:
    watched = Watched(tmp_path / "keys.toml", alice(extra="rate_per_s = 1"))
    assert watched.who(ALICE) == "alice"
    assert watched.who(ALICE) == 429
    replace(watched.path, alice(extra="rate_per_s = 1") + bob())
    assert watched.reloader.check() is ReloadOutcome.RELOADED
    assert watched.who(ALICE) == 429  # a reload is no refill


def test_the_first_load_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(alice('"infer", "nope"'))
    with pytest.raises(KeysFileError, match=r"keys\.toml: keys\[0\] \('alice'\): scopes"):
        KeysReloader(path).load()
    with pytest.raises(KeysFileError, match="no such file"):
        KeysReloader(tmp_path / "absent.toml").load()
    with pytest.raises(RuntimeError, match="load"):
        KeysReloader(path).check()


def test_the_background_poll_applies_a_change(tmp_path: Path) -> None:
    watched = Watched(tmp_path / "keys.toml", alice())

    async def scenario() -> None:
        task = asyncio.create_task(watched.reloader.run(interval_s=0.01))
        replace(watched.path, alice() + bob())
        deadline = time.monotonic() + 30  # only a guard against a hang
        while watched.who(BOB, Scope.ADMIN) != "bob":
            assert time.monotonic() < deadline, "the poll never applied the new file"
            assert not task.done()
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert [t.names for t in watched.reloaded] == [("alice", "bob")]


def test_a_failing_callback_does_not_stop_the_poll(tmp_path: Path) -> None:
    calls: list[KeyTable] = []

    def flaky(table: KeyTable) -> None:
        calls.append(table)
        if len(calls) == 1:
            raise RuntimeError("metrics backend hiccup")

    watched = Watched(tmp_path / "keys.toml", alice(), on_reloaded=flaky)

    async def scenario() -> None:
        task = asyncio.create_task(watched.reloader.run(interval_s=0.01))
        replace(watched.path, alice() + bob())
        deadline = time.monotonic() + 30
        while not calls:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        replace(watched.path, bob())
        while len(calls) < 2:
            assert time.monotonic() < deadline, "the poll died with the callback"
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert watched.who(ALICE) == 401
