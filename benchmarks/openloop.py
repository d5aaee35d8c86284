"""An open-loop HTTP/1.1 load generator on asyncio streams: requests leave on a fixed schedule,
whether or not earlier ones were answered, as real independent clients do under overload.

Latency is measured from each request's SCHEDULED time, so a generator that falls behind (or a
server that accepts slowly) shows up as latency instead of silently lowering the offered rate.
Small on purpose: one body, one route, keep-alive pool or one connection per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``status`` is the HTTP status, or 0 when the client got none (``error`` says why)."""

    status: int
    latency_s: float
    error: str = ""
    worker: str = ""
    #: How late the request left against its schedule: the generator's own lag.
    lag_s: float = 0.0


@dataclass
class Load:
    host: str
    port: int
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    keep_alive: bool = True
    timeout_s: float = 5.0
    max_connections: int = 512

    def request(self) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(self.body)}",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        if not self.keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """Status and lower-cased headers; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(status_line.split()[1]), headers


class OpenLoop:
    """Offer ``rate`` requests/s for ``duration_s``; ``outcomes`` holds one entry per request."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.outcomes: list[Outcome] = []
        self._idle: deque[Streams] = deque()
        self._open = 0
        self._request = load.request()
        self._slots = asyncio.Semaphore(load.max_connections)

    async def run(self, rate: float, duration_s: float) -> list[Outcome]:
        count = int(rate * duration_s)
        start = time.monotonic() + 0.05
        tasks = []
        for index in range(count):
            scheduled = start + index / rate
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._one(scheduled)))
        await asyncio.gather(*tasks)
        while self._idle:
            _, writer = self._idle.popleft()
            writer.close()
        return self.outcomes

    async def _one(self, scheduled: float) -> None:
        load = self.load
        async with self._slots:
            streams: Streams | None = None
            lag = 0.0
            try:
                async with asyncio.timeout(load.timeout_s - (time.monotonic() - scheduled)):
                    streams = self._idle.popleft() if self._idle else None
                    if streams is None:
                        streams = await asyncio.open_connection(load.host, load.port)
                    reader, writer = streams
                    lag = time.monotonic() - scheduled
                    writer.write(self._request)
                    await writer.drain()
                    status, headers = await read_response(reader)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if streams is not None:
                    streams[1].close()
                kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
                self.outcomes.append(Outcome(0, time.monotonic() - scheduled, kind, lag_s=lag))
                return
            latency = time.monotonic() - scheduled
            worker = headers.get(b"x-served-by", b"").decode()
            self.outcomes.append(Outcome(status, latency, worker=worker, lag_s=lag))
            if load.keep_alive and headers.get(b"connection") != b"close":
                self._idle.append(streams)
            else:
                with contextlib.suppress(OSError):
                    streams[1].close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


async def closed_loop(
    load: Load, connections: int, duration_s: float
) -> tuple[list[Outcome], dict[int, int]]:
    """``connections`` keep-alive clients, each sending its next request when answered, for
    ``duration_s``: the outcomes, and requests answered per client port (to find the worker)."""
    outcomes: list[Outcome] = []
    per_port: dict[int, int] = {}
    request = load.request()
    stop = time.monotonic() + duration_s

    async def client() -> None:
        reader, writer = await asyncio.open_connection(load.host, load.port)
        port = writer.get_extra_info("sockname")[1]
        try:
            while time.monotonic() < stop:
                sent = time.monotonic()
                writer.write(request)
                await writer.drain()
                status, headers = await read_response(reader)
                outcomes.append(Outcome(status, time.monotonic() - sent))
                per_port[port] = per_port.get(port, 0) + 1
                if headers.get(b"connection") == b"close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(load.host, load.port)
                    port = writer.get_extra_info("sockname")[1]
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return outcomes, per_port
