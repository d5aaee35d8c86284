"""The real `python -m serving` on a loopback port, with many concurrent clients."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from tests.conftest import ServerStarter
from tests.support.tiny_model import synthetic_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Array = npt.NDArray[np.float32]
CLIENTS = 32
REQUESTS_PER_CLIENT = 8


_sessions: dict[Path, Any] = {}


def reference(repository: Path, pixels: Array) -> Array:
    """onnxruntime run directly on the same model file and inputs."""
    if repository not in _sessions:
        _sessions[repository] = ort.InferenceSession(str(repository / "mnist/1/model.onnx"))
    result: Array = _sessions[repository].run(["probabilities"], {"pixels": pixels})[0]
    return result


def workload(seed: int) -> list[Array]:
    """Mixed sizes: 1 to 40 rows per request (some larger than a small max_batch_size)."""
    rng = np.random.default_rng(seed)
    return [
        synthetic_images(int(rng.integers(1, 41)), seed=seed * 100 + i)
        for i in range(REQUESTS_PER_CLIENT)
    ]


async def client_loop(
    base_url: str, requests: list[Array], results: list[tuple[int, Array, Any]]
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for pixels in requests:
            response = await client.post("/v1/predict", json={"instances": pixels.tolist()})
            results.append((response.status_code, pixels, response.json()))


def test_concurrent_clients_get_exact_answers_in_order(
    serving_server: ServerStarter, tiny_model_repository: Path
) -> None:
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository), "SERVING_MAX_BATCH_SIZE": "32"}
    results: list[tuple[int, Array, Any]] = []
    with serving_server(env) as server:

        async def main() -> None:
            await asyncio.gather(
                *(client_loop(server.base_url, workload(c), results) for c in range(CLIENTS))
            )

        asyncio.run(main())
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    assert all(status == 200 for status, _, _ in results)
    for _, pixels, body in results:
        got = np.array([p["probabilities"] for p in body["predictions"]], dtype=np.float32)
        np.testing.assert_allclose(got, reference(tiny_model_repository, pixels), atol=1e-6)


def test_a_bad_request_among_good_ones_does_not_disturb_them(
    serving_server: ServerStarter, tiny_model_repository: Path
) -> None:
    good = synthetic_images(4, seed=11)
    bad = synthetic_images(4, seed=12).tolist()
    bad[2][5] = 7.0

    async def main(base_url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            bodies = [good.tolist()] * 10 + [bad] + [good.tolist()] * 10
            return list(
                await asyncio.gather(
                    *(client.post("/v1/predict", json={"instances": b}) for b in bodies)
                )
            )

    with serving_server({"SERVING_MODEL_REPOSITORY": str(tiny_model_repository)}) as server:
        responses = asyncio.run(main(server.base_url))
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 10 + [422] + [200] * 10
    assert "instance 2" in responses[10].json()["error"]["message"]
    expected = reference(tiny_model_repository, good)
    for response in responses[:10] + responses[11:]:
        got = np.array([p["probabilities"] for p in response.json()["predictions"]])
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(
    serving_server: ServerStarter, tiny_model_repository: Path
) -> None:
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository), "SERVING_DRAIN_TIMEOUT_S": "10"}
    outcomes: list[int] = []
    transport_errors: list[str] = []
    closing: list[bool] = []

    async def hammer(base_url: str, stop: asyncio.Event, seed: int) -> None:
        pixels = synthetic_images(8, seed=seed).tolist()
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                try:
                    response = await client.post("/v1/predict", json={"instances": pixels})
                except httpx.ConnectError:
                    return  # the listener is closed: the server has finished draining
                except httpx.TransportError as exc:  # reset / cut mid-request: a lost request
                    transport_errors.append(repr(exc))
                    return
                outcomes.append(response.status_code)
                if response.status_code == 503:
                    closing.append(response.headers.get("connection") == "close")
                    return  # like a load balancer: a draining backend gets no more traffic

    with serving_server(env) as server:

        async def main() -> None:
            stop = asyncio.Event()
            tasks = [
                asyncio.create_task(hammer(server.base_url, stop, seed)) for seed in range(CLIENTS)
            ]
            while len(outcomes) < 100:  # noqa: ASYNC110  (clients connected and under way)
                await asyncio.sleep(0.01)
            served_before = len(outcomes)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.process.wait, 30)
            stop.set()
            await asyncio.gather(*tasks)
            assert served_before > 0, (outcomes, transport_errors)

        asyncio.run(main())
        returncode = server.process.returncode
    assert transport_errors == []
    assert returncode == 0, server.log()
    assert set(outcomes) <= {200, 503}
    assert outcomes.count(200) > 0
    assert "draining" in server.log()
    assert closing
    assert all(closing)  # draining responses tell keep-alive clients to go away
