"""Hot reload against a real server with two workers under load: a version published while 16
clients keep sending rolls in with zero failed requests; a corrupt one is refused by every
worker while traffic continues."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.server import serving_process
from tests.support.tiny_model import synthetic_images, write_model_version

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLIENTS = 16
WORKERS = 2
POLL_S = 0.5
#: Polling, loading, verifying and warming a tiny model; generous for a contended CI machine.
ROLL_IN_BUDGET_S = POLL_S + 10.0
RAW = np.random.default_rng(0).integers(0, 256, (1, 784), dtype=np.uint8).tobytes()
V2_BODY = {
    "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784],
                "data": synthetic_images(1).ravel().tolist()}]
}  # fmt: skip


async def client_loop(
    base_url: str, index: int, stop: asyncio.Event, answers: list[tuple[float, int, str]]
) -> None:
    """Send until ``stop``; record (time, status, version that computed it)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        while not stop.is_set():
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
            answers.append((time.monotonic(), response.status_code, version))


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
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^inference_model_versions_refused_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


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
    answers: list[tuple[float, int, str]] = []
    readiness: list[int] = []
    with serving_process(env, tmp_path / "server.log") as server:

        async def scenario() -> tuple[float, float, float]:
            stop = asyncio.Event()
            clients = [
                asyncio.create_task(client_loop(server.base_url, i, stop, answers))
                for i in range(CLIENTS)
            ]
            clients.append(asyncio.create_task(readiness_loop(server.base_url, stop, readiness)))
            await asyncio.sleep(1.0)
            published = time.monotonic()
            await asyncio.to_thread(publish, root, 2)
            while not any(v == "2" for t, _, v in answers if t > published):
                assert time.monotonic() - published < ROLL_IN_BUDGET_S, "v2 never served"
                await asyncio.sleep(0.05)
            rolled_in = time.monotonic()
            await asyncio.sleep(2.0)  # every worker polls and swaps within this
            corrupt_at = time.monotonic()
            await asyncio.to_thread(publish, root, 3, corrupt=True)
            await asyncio.sleep(POLL_S * 4 + 2.0)
            stop.set()
            await asyncio.gather(*clients)
            return published, rolled_in, corrupt_at

        published, rolled_in, corrupt_at = asyncio.run(scenario())
        refused = refused_total(server.base_url)
    log = server.log()
    statuses = {status for _, status, _ in answers}
    assert statuses == {200}, f"non-200 answers: {statuses}"
    assert readiness
    assert set(readiness) == {200}  # ready throughout both rollouts
    assert rolled_in - published < ROLL_IN_BUDGET_S
    after_rollout = [version for t, _, version in answers if t > rolled_in + 1.5]
    assert after_rollout
    assert set(after_rollout) == {"2"}  # every worker swapped; the corrupt v3 is never served
    assert len([t for t, _, _ in answers if t > corrupt_at]) > CLIENTS  # traffic continued
    assert refused == WORKERS  # each worker polled, verified and refused v3 once
    assert log.count("refused model mnist version 3: ") == WORKERS
    assert "is corrupt: sha256" in log
