"""Backpressure: while the service holds all the work it can finish in time, stop reading.

Refusing what could be served invites a refusal storm: a client told 503 sends its next request
at once, and each refusal costs the CPU the service needs. Instead, when the queue holds as many
rows as the batcher can compute within the request deadline (``Pipeline.full``), each
connection that finishes a prediction's response stops being read (its transport is paused):
the client's next request waits in the kernel's socket buffer, costing no CPU, its arrival time
known from the kernel (arrival.py). Only prediction connections are held: a probe or a scrape
comes on a connection of its own, which is read as usual, so readiness and /metrics keep
answering under any load. New connections are held only near ``max_connections`` (beyond it
they would be refused). As batches complete and responses are sent, the
connections that waited longest are read again, first come first served. A request that waited
past its deadline is then refused at once, from its headers (the stale refusal: admission sees
its arrival time; protocol.py writes the 503 without any app code).

Accounting: a connection resumed but whose next request is not yet admitted is ``pending``; it
counts against the room, so one completed batch does not release a thousand connections. It
counts for one sweep interval at most: a request already waiting in the socket buffer is read
within the next loop iterations, and a client with nothing to send yet (think time, paced
clients, one that is done) must not keep the room full while the service idles (it did: 900
paced clients left ~300 such connections counted, every other one held for the whole
``max_wait_s``, and idle requests took 750 ms after the overload). The sweep also releases,
so room that opens that way is used without waiting for a response to complete. The wait in
the socket buffer is invisible to uvicorn's keep-alive timer, which is stopped while a
connection is held (its client is not idle: its request is waiting).

Stale requests do not wait for room: a sweep (every few milliseconds while connections are
held) reads the ones held longer than ``max_wait_s`` (the default deadline with admission's
headroom), whose requests can no longer be served in time. They are refused from their headers
at once, at a fraction of a prediction's cost, instead of waiting for a client timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol


class Holdable(Protocol):
    """What a connection offers: its reading paused and resumed (the HTTP protocol)."""

    def hold(self) -> None:
        """Stop reading (and stop the keep-alive timer)."""

    def resume(self) -> None:
        """Read again (the next request, which may already be waiting)."""

    @property
    def closed(self) -> bool: ...

    @property
    def held_at(self) -> float:
        """``time.monotonic()`` when it was held."""


class Backpressure:
    """One per worker. ``full(pending)``: whether the service has all the work it can finish
    in time, counting ``pending`` requests about to be read."""

    def __init__(self, full: Callable[[int], bool], max_wait_s: float) -> None:
        self._full = full
        self.max_wait_s = max_wait_s
        self._sweep_every_s = max(0.002, max_wait_s / 50)
        self._sweeper: asyncio.TimerHandle | None = None
        self._waiting: deque[Holdable] = deque()
        #: Connections resumed whose next request has not arrived at admission yet, and when
        #: (insertion order is time order).
        self._pending: OrderedDict[Holdable, float] = OrderedDict()
        #: Holds so far (a counter for metrics).
        self.holds = 0

    @property
    def held(self) -> int:
        """Connections waiting now."""
        return len(self._waiting)

    @property
    def pending(self) -> int:
        """Connections resumed within the last sweep interval whose next request has not
        reached admission yet."""
        pending = self._pending
        if pending:
            expired = time.monotonic() - self._sweep_every_s
            while pending and pending[next(iter(pending))] <= expired:
                pending.popitem(last=False)
        return len(pending)

    def at_boundary(self, connection: Holdable) -> bool:
        """``connection`` may read its next request (a response was completed, or it is new):
        hold it when the service is full or older connections are waiting (first come, first
        served); True when held."""
        if not self._waiting and not self._full(self.pending):
            return False
        connection.hold()
        self._waiting.append(connection)
        self.holds += 1
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every_s, self._sweep)
        return True

    def release(self) -> None:
        """Read again the longest-waiting connections while there is room (after a response,
        when a batch's answers go out)."""
        waiting = self._waiting
        while waiting and not self._full(self.pending):
            connection = waiting.popleft()
            if not connection.closed:
                self._resume(connection)

    def _resume(self, connection: Holdable) -> None:
        self._pending[connection] = time.monotonic()
        self._pending.move_to_end(connection)  # the order stays time order
        connection.resume()

    def _sweep(self) -> None:
        """Read the connections held past ``max_wait_s`` (oldest first): their requests are
        stale, and are refused at once when read."""
        self._sweeper = None
        self.release()  # room that opened without a response completing (pending expired)
        waiting = self._waiting
        limit = time.monotonic() - self.max_wait_s
        while waiting and waiting[0].held_at <= limit:
            connection = waiting.popleft()
            if not connection.closed:
                self._resume(connection)
        if waiting:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_every_s, self._sweep)

    def arrived(self, connection: Holdable) -> None:
        """A resumed connection's request reached admission (its rows now count as queued)."""
        self._pending.pop(connection, None)

    def forget(self, connection: Holdable, resumed: bool) -> None:
        """``connection`` closed: drop it from the waiting line (or from ``pending``)."""
        if resumed:
            self.arrived(connection)
            return
        with contextlib.suppress(ValueError):
            self._waiting.remove(connection)
