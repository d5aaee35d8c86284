"""How far behind the event loop runs: a wait that requests face before the server reads them.

When Python work saturates the process, new requests wait in the kernel's socket buffers and the
loop's ready queue, where the batcher's queue cannot see them. A timer that asks to fire every
``interval_s`` and measures how late it fired sees that hidden wait; admission adds it to every
estimated wait, and ``/metrics`` exports it. Like CoDel, it is the STANDING lag, the smallest of
the last few samples: one slow iteration (a collection, start-up work) does not count, a backlog
that persists does.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LoopLag:
    """Samples the running loop's lag; ``standing_s`` is the minimum of the last ``samples``."""

    def __init__(self, interval_s: float = 0.01, samples: int = 5) -> None:
        self._interval = interval_s
        self._recent: deque[float] = deque(maxlen=samples)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.standing_s = 0.0

    def start(self) -> None:
        """Begin sampling on the running loop (idempotent)."""
        if self._handle is None:
            self._schedule(asyncio.get_running_loop(), time.monotonic())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._recent.clear()
        self.standing_s = 0.0

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self._interval
        self._handle = loop.call_later(self._interval, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        recent = self._recent
        recent.append(max(now - self._due, 0.0))
        if len(recent) == recent.maxlen:
            self.standing_s = min(recent)
        self._schedule(loop, now)
