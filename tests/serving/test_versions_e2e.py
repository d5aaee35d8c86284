"""Hot reload against a real server with two workers under load: a version published while 16
clients keep sending rolls in with zero failed requests; a corrupt one is refused by every
worker while traffic continues."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import httpx
import numpy as np
import pytest

from tests.support.metrics import scrape
from tests.support.server import serving_process
from tests.support.tiny_model import synthetic_images, write_model_version
from tests.support.waiting import until, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLIENTS = 16
WORKERS = 2
POLL_S = 0.5
#: Polling, loading, verifying and warming a tiny model; generous for a contended CI machine
#: (also the guard of every wait for a state of the rollout).
ROLL_IN_BUDGET_S = POLL_S + 30.0


class Answer(NamedTuple):
    sent: float
    answered: float
    status: int
    version: str


RAW = np.random.default_rng(0).integers(0, 256, (1, 784), dtype=np.uint8).tobytes()
V2_BODY = {
    "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784],
                "data": synthetic_images(1).ravel().tolist()}]
}  # fmt: skip


async def client_loop(
    base_url: str, index: int, stop: asyncio.Event, answers: list[Answer]
) -> None:
    """Send until ``stop``; record when each request was sent and answered, its status and the
    version that computed it."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        while not stop.is_set():
            sent = time.monotonic()
            if index % 2:
                response = await client.post("/v2/models/mnist/infer", json=V2_BODY)
                version = response.json().get("model_version", "") if response.is_success else ""
            else:
                response = await client.post(
                    "/v1/predict",
                    content=RAW,
                    headers={"content-type": "application/octet-stream"},
                )
                version = response.json()["model"]["version"] if response.is_success else ""
            answers.append(Answer(sent, time.monotonic(), response.status_code, version))


async def readiness_loop(base_url: str, stop: asyncio.Event, statuses: list[int]) -> None:
    """Probe readiness the way a load balancer does, throughout the rollouts."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        while not stop.is_set():
            statuses.append((await client.get("/readyz")).status_code)
            statuses.append((await client.get("/v2/health/ready")).status_code)
            await asyncio.sleep(0.05)


def publish(root: Path, version: int, *, corrupt: bool = False) -> None:
    staged = write_model_version(root / ".staging", "mnist", version, seed=version)
    if corrupt:
        with (staged / "model.onnx").open("r+b") as handle:
            handle.seek(100)
            handle.write(b"\xff" * 16)
    staged.rename(root / "mnist" / str(version))


def refused_total(base_url: str) -> float:
    return scrape(base_url).get(("inference_model_versions_refused_total", ()), 0.0)


def served(base_url: str) -> dict[str, float]:
    """``inference_model_info`` by version: 1 while any live worker serves it (livemax), 0 once
    every worker has retired it."""
    return {
        dict(labels)["version"]: value
        for (name, labels), value in scrape(base_url).items()
        if name == "inference_model_info"
    }


def test_versions_roll_in_under_load_and_corrupt_ones_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model_version(root, "mnist", 1, seed=1)
    env = {
        "SERVING_MODEL_REPOSITORY": str(root),
        "SERVING_WORKERS": str(WORKERS),
        "SERVING_MODEL_POLL_INTERVAL_S": str(POLL_S),
        "SERVING_REQUEST_TIMEOUT_MS": "10000",
        "SERVING_MAX_REQUEST_TIMEOUT_MS": "10000",
    }
    answers: list[Answer] = []
    readiness: list[int] = []
    with serving_process(env, tmp_path / "server.log") as server:
        url = server.base_url

        async def state(condition: Callable[[], bool], what: str) -> None:
            """Wait for a state of the server (scraped in a thread: the clients keep going)."""
            await asyncio.to_thread(wait_until, condition, ROLL_IN_BUDGET_S, what)

        async def scenario() -> tuple[float, float, float, float]:
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(client_loop(url, i, stop, answers)) for i in range(CLIENTS)
            ]
            clients.append(asyncio.create_task(readiness_loop(url, stop, readiness)))
            await until(lambda: len(answers) > 2 * CLIENTS, what="traffic under way")
            published = time.monotonic()
            await asyncio.to_thread(publish, root, 2)
            await until(
                lambda: any(a.version == "2" for a in answers if a.sent > published),
                ROLL_IN_BUDGET_S,
                "v2 served",
            )
            rolled_in = time.monotonic()
            # Every worker swapped: v1 retired everywhere. Requests sent after this moment can
            # only reach v2 (a worker swaps before it reports the retirement).
            await state(lambda: served(url) == {"1": 0, "2": 1}, "every worker on v2")
            swapped = time.monotonic()
            corrupt_at = time.monotonic()
            await asyncio.to_thread(publish, root, 3, corrupt=True)
            await state(lambda: refused_total(url) == WORKERS, "v3 refused by every worker")
            # Traffic goes on through the refusals; a few more polls would repeat a refusal
            # if a worker tried v3 again (this pause can only give that time to show).
            refused_at = len(answers)
            await until(lambda: len(answers) > refused_at + 2 * CLIENTS, what="more traffic")
            await asyncio.sleep(POLL_S * 4)
            stop.set()
            await asyncio.gather(*clients)
            return published, rolled_in, swapped, corrupt_at

        published, rolled_in, swapped, corrupt_at = asyncio.run(scenario())
        refused = refused_total(url)
    log = server.log()
    statuses = {a.status for a in answers}
    assert statuses == {200}, f"non-200 answers: {statuses}"
    assert readiness
    assert set(readiness) == {200}  # ready throughout both rollouts
    assert rolled_in - published < ROLL_IN_BUDGET_S
    after_rollout = [a.version for a in answers if a.sent > swapped]
    assert after_rollout
    assert set(after_rollout) == {"2"}  # every worker swapped; the corrupt v3 is never served
    assert len([a for a in answers if a.answered > corrupt_at]) > CLIENTS  # traffic continued
    assert refused == WORKERS  # each worker polled, verified and refused v3 once
    assert log.count("refused model mnist version 3: ") == WORKERS
    assert "is corrupt: sha256" in log
