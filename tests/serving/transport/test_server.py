"""The server process under SIGTERM with load arriving on new and reused connections, with one
and with two workers: every request whose bytes reached the server is answered."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerStarter
from tests.support.server import listening_workers
from tests.support.tiny_model import synthetic_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLIENTS = 32


class Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.lost: list[str] = []
        self.refused_connections = 0
        self.closing_503: list[bool] = []
        self.after_signal: Counter[int] = Counter()


async def client(base_url: str, body: bytes, tally: Tally, signalled: asyncio.Event) -> None:
    """Keep-alive; on ``Connection: close`` (or any close) reconnect at once, like a client that
    does not know about the drain. Stops when a connection is refused (listener gone)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {"content-type": "application/octet-stream"}
    async with httpx.AsyncClient(base_url=base_url, timeout=20, limits=limits) as http:
        while True:
            try:
                response = await http.post("/v1/predict", content=body, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                tally.refused_connections += 1  # no byte of this request reached the server
                return
            except httpx.TransportError as exc:  # reset or closed after the request was sent
                tally.lost.append(repr(exc))
                return
            tally.statuses[response.status_code] += 1
            if signalled.is_set():
                tally.after_signal[response.status_code] += 1
            if response.status_code == 503:
                tally.closing_503.append(response.headers.get("connection") == "close")


def run_sigterm_under_load(server_base: str, process_signal: object, tally: Tally) -> None:
    body = (synthetic_images(2, seed=3) * 255).astype("uint8").tobytes()

    async def main() -> None:
        signalled = asyncio.Event()
        tasks = [
            asyncio.create_task(client(server_base, body, tally, signalled)) for _ in range(CLIENTS)
        ]
        while sum(tally.statuses.values()) < 200:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        signalled.set()
        process_signal()  # type: ignore[operator]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    asyncio.run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_answers_every_request_that_reached_the_server(
    serving_server: ServerStarter, tiny_model_repository: Path, workers: int
) -> None:
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_WORKERS": str(workers),
        # The grace period in which the clients' new requests must meet more than one 503 each
        # on average: 2 s leaves a busy machine's clients (32 coroutines reconnecting at once
        # after each 503) a wide margin over the CLIENTS 503s asserted below.
        "SERVING_DRAIN_GRACE_S": "2.0",
        "SERVING_DRAIN_TIMEOUT_S": "10",
    }
    tally = Tally()
    with serving_server(env, ready_timeout_s=60) as server:
        if workers > 1:
            assert len(listening_workers(server.process.pid, workers)) == workers
        signalled_at: list[float] = []

        def send() -> None:
            signalled_at.append(time.monotonic())
            server.process.send_signal(signal.SIGTERM)

        run_sigterm_under_load(server.base_url, send, tally)
        returncode = server.process.wait(timeout=30)
        log = server.log()
    assert tally.lost == [], (tally.lost[:5], tally.statuses, log[-3000:])
    assert returncode == 0, log[-3000:]
    assert set(tally.statuses) <= {200, 503}, tally.statuses
    assert tally.statuses[200] >= 200
    # During the grace period new requests kept arriving and were told to go away.
    assert tally.after_signal[503] > CLIENTS, tally.after_signal
    assert all(tally.closing_503)
    assert tally.refused_connections == CLIENTS  # every client ended on a closed listener
