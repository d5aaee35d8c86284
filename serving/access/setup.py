"""Access control from the settings: the one call the wiring makes per worker at start-up.

access = build_access(settings, on_refused=..., on_reloaded=...)   # KeysFileError: no start
task = asyncio.create_task(access.watch())                          # in the lifespan
... access.guard.check(scope, authorization) per request ...
task.cancel()                                                       # at shutdown
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from serving.access.guard import Guard
from serving.access.keys import KeyTable
from serving.access.reloader import KeysReloader, RefusalReason
from serving.settings import Settings


@dataclass(frozen=True)
class Access:
    """One worker's guard and, with a keys file, the reloader that keeps it current."""

    guard: Guard
    reloader: KeysReloader | None
    reload_interval_s: float

    async def watch(self) -> None:
        """Poll the keys file until cancelled (returns at once without a keys file)."""
        if self.reloader is not None:
            await self.reloader.run(self.reload_interval_s)


def build_access(
    settings: Settings,
    *,
    on_refused: Callable[[RefusalReason], None] | None = None,
    on_reloaded: Callable[[KeyTable], None] | None = None,
) -> Access:
    """The guard for ``settings``; raises :class:`~serving.access.keys.KeysFileError` when the
    keys file cannot be used (the worker must not start on it). ``on_refused`` / ``on_reloaded``
    are called for every refused / applied reload (counters)."""
    if settings.keys_file is None:
        return Access(Guard(None), None, settings.keys_reload_interval_s)
    reloader = KeysReloader(settings.keys_file, on_refused=on_refused, on_reloaded=on_reloaded)
    guard = Guard(reloader.load(), require_keys=settings.require_keys)
    reloader.apply = guard.use
    return Access(guard, reloader, settings.keys_reload_interval_s)
