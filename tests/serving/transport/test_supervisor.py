"""``workers > 1`` under serving.transport.supervisor: each worker has its own SO_REUSEPORT
listener, so keep-alive connections (and their requests) spread over the workers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ServerStarter
from tests.support.server import listening_workers
from tests.support.tiny_model import synthetic_images
from tests.support.waiting import until, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CONNECTIONS = 64
REQUESTS_PER_CONNECTION = 40


def worker_of_each_client_port(supervisor_pid: int) -> dict[int, int]:
    """Client port -> pid of the worker holding the server side of that connection."""
    owners: dict[int, int] = {}
    for child in psutil.Process(supervisor_pid).children():
        try:
            connections = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        for conn in connections:
            if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
                owners[conn.raddr.port] = child.pid
    return owners


async def keep_alive_client(
    base_url: str, body: bytes, ports: list[int], mapped: asyncio.Event
) -> list[int]:
    """Send requests on ONE connection; the statuses, and its local port in ``ports``. After
    the first answer it waits for ``mapped``: the test has seen which worker holds it."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    statuses = []
    headers = {"content-type": "application/octet-stream"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        for index in range(REQUESTS_PER_CONNECTION):
            response = await http.post("/v1/predict", content=body, headers=headers)
            statuses.append(response.status_code)
            if index == 0:
                stream = response.extensions["network_stream"]
                ports.append(stream.get_extra_info("client_addr")[1])
                await mapped.wait()
    return statuses


def test_two_workers_share_keep_alive_load_and_both_drain(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    body = (synthetic_images(1, seed=5) * 255).astype("uint8").tobytes()
    ports: list[int] = []
    with serving_server(env, ready_timeout_s=60) as server:
        assert len(listening_workers(server.process.pid)) == 2

        async def main_and_map() -> tuple[list[list[int]], dict[int, int]]:
            # Every connection stays open, after its first answer, until the test has seen
            # which worker holds it: no connection can come and go between two looks.
            mapped = asyncio.Event()
            clients = [
                asyncio.create_task(keep_alive_client(server.base_url, body, ports, mapped))
                for _ in range(CONNECTIONS)
            ]
            await until(lambda: len(ports) == CONNECTIONS, what="every connection answered")
            owners: dict[int, int] = {}

            def all_seen() -> bool:
                owners.update(worker_of_each_client_port(server.process.pid))
                return all(port in owners for port in ports)

            await asyncio.to_thread(wait_until, all_seen, what="each connection's worker")
            mapped.set()
            return list(await asyncio.gather(*clients)), owners

        statuses, owners = asyncio.run(main_and_map())
        workers = {child.pid for child in psutil.Process(server.process.pid).children()}
        returncode = server.stop()
    assert all(s == 200 for per_client in statuses for s in per_client)
    assert len(ports) == CONNECTIONS
    assert all(port in owners for port in ports), (ports, owners)
    per_worker = Counter(owners[port] for port in ports)
    assert set(per_worker) <= workers
    shares = sorted(count / CONNECTIONS for count in per_worker.values())
    # The kernel hashes connections over the listeners: with 64 connections each worker gets
    # 50 % +- 6 % (one standard deviation); below 25 % is a 1-in-40,000 event for two workers
    # (with 32 connections it was about 1 in 500: a flaky test).
    assert len(shares) == 2, per_worker
    assert shares[0] >= 0.25, per_worker
    assert returncode == 0


def test_a_worker_that_dies_is_replaced_and_the_service_keeps_serving(
    serving_server: ServerStarter, tiny_model_repository: Path, tmp_path: Path
) -> None:
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    with serving_server(env, ready_timeout_s=60) as server:
        first = listening_workers(server.process.pid)
        assert len(first) == 2
        victim = min(first)
        psutil.Process(victim).kill()
        deadline = time.monotonic() + 60
        while victim in (now := listening_workers(server.process.pid)) or len(now) < 2:
            assert time.monotonic() < deadline, f"no replacement worker: {now}\n{server.log()}"
            time.sleep(0.2)
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert all(http.get("/readyz").status_code == 200 for _ in range(20))
        returncode = server.stop()
    assert returncode == 0, server.log()
    assert "restarting" in server.log()
