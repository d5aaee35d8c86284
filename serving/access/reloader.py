"""Hot rotation: each worker re-reads the keys file every few seconds and swaps a changed,
valid key table in; a file that cannot be used is refused as a whole and the keys in force stay.

The file's content is compared, not only its mtime, size or inode: content catches every way a
file changes (an edit within one timestamp tick, a Kubernetes Secret's ``..data`` symlink swap,
a Cloud Run Secret Manager volume whose metadata may not change with a new version) at the cost
of reading a small file each interval. The read runs in a thread because a secret volume can be
network-backed (Cloud Run fetches Secret Manager on each read); parsing and the swap run on the
event loop, where the guard reads the table, so no lock is needed.

Write the file atomically (write a new file, then rename it over the old one, as Kubernetes and
``mv`` do); a writer that truncates and rewrites in place can be read half-way. An empty or
truncated file is refused (keys.parse_keys), but a cut exactly between two entries is not
detectable.

Logs name the file, the keys (by name) and the problem, never key material. ``on_refused``
(reason ``unreadable`` or ``invalid``) and ``on_reloaded`` let the observability layer count
refusals and reloads without this module knowing about metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from serving.access.keys import KeysFileError, KeyTable, parse_keys, read_keys_file

logger = logging.getLogger(__name__)


class ReloadOutcome(StrEnum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"
    REFUSED = "refused"


class RefusalReason(StrEnum):
    """Bounded label for the refusal counter."""

    UNREADABLE = "unreadable"
    INVALID = "invalid"


def describe_changes(old: KeyTable, new: KeyTable) -> str:
    """``added [...]; removed [...]; changed [...]`` by key name (no key material)."""
    before = {key.name: key for key in old.keys}
    after = {key.name: key for key in new.keys}
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(name for name in set(before) & set(after) if before[name] != after[name])
    parts = [
        f"{label} {', '.join(names)}"
        for label, names in (("added", added), ("removed", removed), ("changed", changed))
        if names
    ]
    return "; ".join(parts) or "no key changed"


class KeysReloader:
    """Watches one keys file for one worker and hands every new valid table to ``apply``
    (e.g. ``Guard.use``; it can be set after :meth:`load`, once the guard is built on its table).
    """

    def __init__(
        self,
        path: Path,
        apply: Callable[[KeyTable], None] | None = None,
        *,
        on_refused: Callable[[RefusalReason], None] | None = None,
        on_reloaded: Callable[[KeyTable], None] | None = None,
    ) -> None:
        self.path = path
        self.apply = apply
        self._on_refused = on_refused
        self._on_reloaded = on_reloaded
        self._table: KeyTable | None = None
        #: The content of the table in force.
        self._accepted: bytes | None = None
        #: What the last look found: the content, or the message of why it could not be read.
        self._last: bytes | str | None = None

    @property
    def table(self) -> KeyTable | None:
        """The key table in force (None before :meth:`load`)."""
        return self._table

    def load(self) -> KeyTable:
        """The first load, at start-up: the table, for the caller to build its guard on (it is not
        passed to ``apply``); :class:`KeysFileError` if the file cannot be used, because the
        service must not start on a keys file it cannot use."""
        data = read_keys_file(self.path)
        try:
            table = parse_keys(data)
        except KeysFileError as exc:
            raise KeysFileError(f"{self.path}: {exc}") from None
        self._accept(data, table, apply=False)
        names = ", ".join(table.names)
        logger.info("keys file %s: %d keys (%s)", self.path, len(table.keys), names)
        return table

    def read(self) -> bytes | str:
        """The file's bytes, or why they cannot be read (blocking: run it in a thread)."""
        try:
            return read_keys_file(self.path)
        except KeysFileError as exc:
            return str(exc)

    def check(self) -> ReloadOutcome:
        """Look at the file now and apply what changed (what the background poll does)."""
        return self.consider(self.read())

    def consider(self, seen: bytes | str) -> ReloadOutcome:
        """Apply what :meth:`read` returned: swap in a changed valid table, refuse a file that
        cannot be used (logged and counted once per distinct content), ignore what is unchanged.
        """
        if self._table is None or self.apply is None:
            raise RuntimeError("KeysReloader: load() must succeed and apply be set before reloads")
        if seen == self._last:
            return ReloadOutcome.UNCHANGED
        self._last = seen
        if isinstance(seen, str):
            return self._refuse(RefusalReason.UNREADABLE, seen)
        if seen == self._accepted:
            logger.info("keys file %s is usable again: the keys in force are unchanged", self.path)
            return ReloadOutcome.UNCHANGED
        try:
            table = parse_keys(seen)
        except KeysFileError as exc:
            return self._refuse(RefusalReason.INVALID, f"{self.path}: {exc}")
        old = self._table
        self._accept(seen, table, apply=True)
        logger.info(
            "keys file %s reloaded: %d keys; %s",
            self.path,
            len(table.keys),
            describe_changes(old, table),
        )
        if self._on_reloaded is not None:
            self._on_reloaded(table)
        return ReloadOutcome.RELOADED

    async def run(self, interval_s: float) -> None:
        """Check every ``interval_s`` until cancelled (a task per worker, started after
        :meth:`load`). A failure of one check is logged and the next one runs."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.consider(await asyncio.to_thread(self.read))
            except Exception:
                logger.exception("keys file %s: reload failed; the keys in force stay", self.path)

    def _accept(self, data: bytes, table: KeyTable, *, apply: bool) -> None:
        if apply:
            assert self.apply is not None
            self.apply(table)
        self._table = table
        self._accepted = self._last = data
        if table.short_keys:
            logger.warning(
                "keys file %s: the key(s) %s are shorter than 16 characters and could be "
                "guessed; use e.g. openssl rand -hex 32",
                self.path,
                ", ".join(table.short_keys),
            )

    def _refuse(self, reason: RefusalReason, problem: str) -> ReloadOutcome:
        assert self._table is not None
        logger.error(
            "keys file refused (%s), the %d keys in force stay: %s",
            reason,
            len(self._table.keys),
            problem,
        )
        if self._on_refused is not None:
            self._on_refused(reason)
        return ReloadOutcome.REFUSED
