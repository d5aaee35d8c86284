"""Backpressure: while the service holds all the work it can finish in time, prediction
connections are not read, so their next requests wait in the kernel instead of being refused.

The unit tests drive the waiting line with stand-in connections; the end-to-end ones hold a batch
in compute with the slow model's gate file (no sleeps as synchronisation) and watch a real
server through /metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.testing import ServerProcess
from serving.transport.backpressure import Backpressure
from tests.support import slow_serving
from tests.support.metrics import queued_rows, wait_for
from tests.support.slow_serving import entered
from tests.support.tiny_model import synthetic_images


class Connection:
    """A stand-in for the HTTP protocol's side of holding."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.held = False
        self.resumed = 0
        self.closed = False
        self.held_at = 0.0

    def hold(self) -> None:
        self.held = True
        self.held_at = time.monotonic()

    def resume(self) -> None:
        self.held = False
        self.resumed += 1


class Room:
    """``full(pending)``: full while ``queued + pending`` reaches ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0

    def full(self, pending: int) -> bool:
        return self.queued + pending >= self.limit


def test_connections_wait_first_come_first_served_and_pending_counts() -> None:
    async def scenario() -> None:
        room = Room(limit=2)
        line = Backpressure(room.full, max_wait_s=60)
        a, b, c = Connection("a"), Connection("b"), Connection("c")
        assert not line.at_boundary(a)  # room: read at once
        room.queued = 2  # full
        assert line.at_boundary(b)
        assert line.at_boundary(c)
        assert (b.held, c.held, line.held) == (True, True, 2)
        room.queued = 1  # a batch went out: room for one
        line.release()
        assert (b.resumed, c.resumed, line.pending) == (1, 0, 1)  # the oldest first
        line.release()  # the resumed one's request has not arrived: still no room for c
        assert c.resumed == 0
        line.arrived(b)  # b's request was admitted: it is now among the queued
        room.queued = 1
        line.release()
        assert (c.resumed, line.pending, line.held) == (1, 1, 0)
        room.queued = 0
        d = Connection("d")
        line.at_boundary(d)  # room, and nobody waiting: not held
        assert not d.held

    asyncio.run(scenario())


def test_a_connection_waiting_behind_others_is_held_even_with_room() -> None:
    """First come, first served: with others waiting, a connection finishing a response goes to
    the back of the line instead of overtaking them."""

    async def scenario() -> None:
        room = Room(limit=1)
        line = Backpressure(room.full, max_wait_s=60)
        room.queued = 1
        first = Connection("first")
        line.at_boundary(first)
        room.queued = 0
        late = Connection("late")
        assert line.at_boundary(late)
        line.release()
        assert (first.resumed, late.resumed) == (1, 0)

    asyncio.run(scenario())


def test_closed_connections_leave_the_line_and_the_pending_count() -> None:
    async def scenario() -> None:
        room = Room(limit=1)
        room.queued = 1
        line = Backpressure(room.full, max_wait_s=60)
        gone, stays = Connection("gone"), Connection("stays")
        line.at_boundary(gone)
        line.at_boundary(stays)
        line.forget(gone, resumed=False)
        assert line.held == 1
        room.queued = 0
        line.release()
        assert stays.resumed == 1
        line.forget(stays, resumed=True)  # closed before its request arrived
        assert line.pending == 0

    asyncio.run(scenario())


def test_a_resumed_client_with_nothing_to_send_stops_counting_after_a_sweep() -> None:
    """A paced or finished client's connection, resumed, sends nothing: it counts as pending
    for one sweep interval, then no longer keeps the room full, and the sweep reads the next
    one without any response completing (it waited 750 ms per request after an overload)."""

    async def scenario() -> None:
        room = Room(limit=1)
        room.queued = 1
        line = Backpressure(room.full, max_wait_s=0.05)  # sweeps every 2 ms
        quiet, waiting = Connection("quiet"), Connection("waiting")
        line.at_boundary(quiet)
        line.at_boundary(waiting)
        waiting.held_at += 3600.0  # never stale: only room can read it
        room.queued = 0
        line.release()
        assert (quiet.resumed, waiting.resumed, line.pending) == (1, 0, 1)
        deadline = time.monotonic() + 10
        while not waiting.resumed:
            assert time.monotonic() < deadline, "quiet's client kept the room full"
            await asyncio.sleep(0.005)
        line.arrived(quiet)  # a request that comes late is harmless
        assert line.held == 0

    asyncio.run(scenario())


def test_the_sweep_reads_requests_held_past_the_deadline_even_when_full() -> None:
    """A connection held longer than max_wait_s cannot be served in time: the sweep reads it
    (to refuse it from its headers) although there is no room; younger ones keep waiting."""

    async def scenario() -> None:
        room = Room(limit=1)
        room.queued = 1
        line = Backpressure(room.full, max_wait_s=0.05)
        old, young = Connection("old"), Connection("young")
        line.at_boundary(old)
        line.at_boundary(young)
        old.held_at -= 1.0  # held a second ago
        young.held_at += 3600.0  # not before an hour (the clock only guards the test)
        deadline = time.monotonic() + 10
        while not old.resumed:
            assert time.monotonic() < deadline, "the sweep never ran"
            await asyncio.sleep(0.005)
        assert young.resumed == 0
        assert line.held == 1

    asyncio.run(scenario())


# ---------------------------------------------------------------------- end to end
RAW = {"content-type": "application/octet-stream"}
ONE_ROW = (synthetic_images(1, seed=11) * 255).astype("uint8").tobytes()
FOUR_ROWS = (synthetic_images(4, seed=12) * 255).astype("uint8").tobytes()


@pytest.fixture
def gated_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ServerProcess, Path]]:
    server, gate = slow_serving.gated_server(
        request.getfixturevalue("tiny_model_repository"),
        tmp_path,
        SERVING_MAX_BATCH_SIZE="4",
        SERVING_MAX_INSTANCES="4",
        SERVING_MAX_QUEUE_SIZE="4",
        SERVING_BACKPRESSURE=request.param,
    )
    with server:
        yield server, gate


def fill(server: ServerProcess, gate: Path) -> list[threading.Thread]:
    """One batch held in compute and a full queue (4 rows) behind it (after one request served
    at once, so that the service knows how fast it is when nothing holds it)."""
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert client.post("/v1/predict", content=ONE_ROW, headers=RAW).status_code == 200
    gate.touch()

    def post(body: bytes) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            assert client.post("/v1/predict", content=body, headers=RAW).status_code == 200

    computing = threading.Thread(target=post, args=(ONE_ROW,))
    computing.start()
    deadline = time.monotonic() + 30
    while not entered(gate).exists():
        assert time.monotonic() < deadline, "no batch entered the model"
        time.sleep(0.005)
    queued = threading.Thread(target=post, args=(FOUR_ROWS,))
    queued.start()
    wait_for(server.base_url, lambda samples: queued_rows(samples) == 4)
    return [computing, queued]


class Retrier(threading.Thread):
    """A client that ignores Retry-After: on 503 it sends again at once, on its connection."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, tries: int = 200) -> None:
        super().__init__()
        self.url = url
        self.headers = {**RAW, **(headers or {})}
        self.tries = tries
        self.statuses: list[int] = []
        self.messages: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for _ in range(self.tries):
                response = client.post("/v1/predict", content=ONE_ROW, headers=self.headers)
                self.statuses.append(response.status_code)
                self.messages.append(response.text)
                if response.status_code != 503:
                    return


def held(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return samples.get(("inference_connections_held", ()), 0.0)


@pytest.mark.e2e
@pytest.mark.parametrize("gated_server", ["true"], indirect=True)
def test_a_refused_client_retrying_at_once_waits_instead_of_storming(
    gated_server: tuple[ServerProcess, Path],
) -> None:
    """With the queue full, a client's first request is refused (it was read before the service
    knew), its immediate retry is held in the kernel, not refused, and served once room frees; a
    retry whose own deadline passed while held is refused then, from its headers.

    Without backpressure (the next test) every retry is refused until the queue drains."""
    server, gate = gated_server
    computing = fill(server, gate)
    clients = [Retrier(server.base_url) for _ in range(4)]
    stale = Retrier(server.base_url, {"x-request-timeout-ms": "300"})
    for client in [*clients, stale]:
        client.start()
    wait_for(server.base_url, lambda samples: held(samples) == 5)  # every retry is waiting
    time.sleep(0.4)  # the stale client's retry is now older than its 300 ms deadline
    gate.unlink()
    for thread in [*computing, *clients, stale]:
        thread.join(timeout=60)
    assert [client.statuses for client in clients] == [[503, 200]] * 4
    assert stale.statuses[:2] == [503, 503], stale.messages
    assert "queue full" in stale.messages[0]
    assert "overloaded" in stale.messages[1]  # past its deadline when read: refused
    # Then served; a retry may still be refused while the meter, which timed the held batch
    # in seconds, relearns the batch time (its average falls slowly by design).
    assert stale.statuses[-1] == 200
    assert len(stale.statuses) <= 6, stale.statuses


@pytest.mark.e2e
@pytest.mark.parametrize("gated_server", ["false"], indirect=True)
def test_without_backpressure_every_retry_is_refused_at_once(
    gated_server: tuple[ServerProcess, Path],
) -> None:
    """The storm backpressure prevents: the same clients, each retry refused while the queue is
    full (each refusal costing the service CPU and the client a round trip)."""
    server, gate = gated_server
    computing = fill(server, gate)
    clients = [Retrier(server.base_url, tries=20) for _ in range(2)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=60)
    gate.unlink()
    for thread in computing:
        thread.join(timeout=60)
    assert [client.statuses for client in clients] == [[503] * 20] * 2
