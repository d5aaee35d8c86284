"""Waiting for a state instead of sleeping for a while.

A test that sleeps "long enough" for something to happen fails on a machine slower than the one
it was written on. These poll a condition until it holds; the timeout is generous and only
guards against a hang (a failure then says which state never came)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Long enough for a contended CI machine to reach any state a test waits for.
HANG_S = 60.0


def wait_until(condition: Callable[[], bool], timeout_s: float = HANG_S, what: str = "") -> None:
    """Poll ``condition`` from a thread until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never held within {timeout_s} s: {what or condition}"
        time.sleep(0.005)


async def until(condition: Callable[[], bool], timeout_s: float = HANG_S, what: str = "") -> None:
    """Poll ``condition`` from a coroutine (the event loop keeps running) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never held within {timeout_s} s: {what or condition}"
        await asyncio.sleep(0.002)
