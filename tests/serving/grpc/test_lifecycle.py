"""gRPC against ``python -m serving`` where the lifecycle matters: calls batched together,
deadlines and cancellation, SIGTERM draining, the repository extension, a taken port.

Batches are held in onnxruntime by tests/support/slow_serving.py's gate file; every wait is for
a state (a file, a metric, a health status), never a sleep.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from serving.testing import ServerProcess
from tests.support import slow_serving
from tests.support.metrics import Samples, queued_rows, scrape, wait_for
from tests.support.server import REPO, free_port, serving_process
from tests.support.slow_serving import entered
from tests.support.tiny_model import synthetic_images, write_model_version

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@contextmanager
def gated_server(
    tiny_model_repository: Path, tmp_path: Path, workers: int = 1
) -> Iterator[tuple[ServerProcess, str, Path]]:
    """The real service whose batches wait while ``gate`` exists (it does at start)."""
    port = free_port()
    server, gate = slow_serving.gated_server(
        tiny_model_repository,
        tmp_path,
        SERVING_GRPC_PORT=str(port),
        SERVING_WORKERS=str(workers),
        SERVING_MODEL_POLL_INTERVAL_S="0",
        # A scrape refreshes the answering worker's metrics; the others publish at this pace.
        SERVING_METRICS_SAMPLE_INTERVAL_S="0.2",
    )
    gate.touch()
    with server:
        wait_until(lambda: health(f"127.0.0.1:{port}") is not None)  # every worker has gRPC
        yield server, f"127.0.0.1:{port}", gate


def health(url: str, service: str = "") -> int | None:
    """The health status of ``service``, None when nothing answers."""
    try:
        with grpc.insecure_channel(url) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # its typeshed stub omits methods
            status: int = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5
            ).status
            return status
    except grpc.RpcError:
        return None


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


async def until(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


def infer(client: Any, rows: int, **kwargs: Any) -> Any:
    """``client.infer`` (an aio client: a coroutine) of ``rows`` images."""
    tensor = triton_aio.InferInput("pixels", [rows, 784], "FP32")
    tensor.set_data_from_numpy(synthetic_images(rows, seed=rows))
    return client.infer("mnist", [tensor], **kwargs)


def counter(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def batch_totals(samples: Samples) -> tuple[float, float, float]:
    """(requests computed, batches, rows computed) so far."""
    return (
        counter(samples, "inference_batch_requests_sum"),
        counter(samples, "inference_batch_requests_count"),
        counter(samples, "inference_batch_size_rows_sum"),
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_calls_are_computed_in_one_batch(
    tiny_model_repository: Path, tmp_path: Path, workers: int
) -> None:
    with gated_server(tiny_model_repository, tmp_path, workers) as (server, url, gate):
        before = batch_totals(scrape(server.base_url))

        async def run() -> list[int]:
            client = triton_aio.InferenceServerClient(url)
            try:
                computing = asyncio.ensure_future(infer(client, 1))
                await until(entered(gate).exists)  # a batch is held in compute
                waiting = [asyncio.ensure_future(infer(client, 1)) for _ in range(6)]
                await asyncio.to_thread(
                    wait_for, server.base_url, lambda samples: queued_rows(samples) == 6
                )
                gate.unlink()  # release: the six queued calls form the next batch together
                results = await asyncio.gather(computing, *waiting)
                return [int(result.as_numpy("label").shape[0]) for result in results]
            finally:
                await client.close()

        assert asyncio.run(run()) == [1] * 7
        # Once every worker's counts are in /metrics (a state, then exact figures).
        after = batch_totals(
            wait_for(server.base_url, lambda samples: batch_totals(samples)[0] >= before[0] + 7)
        )
    requests, batches, rows = (a - b for a, b in zip(after, before, strict=True))
    assert (requests, batches, rows) == (7, 2, 7)


def test_deadline_and_cancellation_drop_calls_before_compute(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    with gated_server(tiny_model_repository, tmp_path) as (server, url, gate):
        before = scrape(server.base_url)

        async def run() -> None:
            client = triton_aio.InferenceServerClient(url)
            try:
                computing = asyncio.ensure_future(infer(client, 1))
                await until(entered(gate).exists)
                # The gRPC deadline passes while the call waits behind the held batch (2 s: long
                # enough to be queued before it passes, on a busy machine too).
                with pytest.raises(InferenceServerException) as raised:
                    await infer(client, 2, client_timeout=2.0)
                assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED"
                # A call that the client abandons while it waits.
                leaving = asyncio.ensure_future(infer(client, 3))
                await asyncio.to_thread(
                    wait_for, server.base_url, lambda samples: queued_rows(samples) == 2 + 3
                )
                leaving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await leaving
                # A round trip on the same connection after the cancellation: the server has
                # read the cancellation (frames of one connection are read in order).
                assert await client.is_server_live()
                staying = asyncio.ensure_future(infer(client, 4))
                await asyncio.to_thread(
                    wait_for, server.base_url, lambda samples: queued_rows(samples) == 2 + 3 + 4
                )
                gate.unlink()
                assert (await computing).as_numpy("label").shape == (1,)
                assert (await staying).as_numpy("label").shape == (4,)
            finally:
                await client.close()

        asyncio.run(run())
        after = wait_for(server.base_url, lambda samples: queued_rows(samples) == 0)
    requests, batches, rows = (
        a - b for a, b in zip(batch_totals(after), batch_totals(before), strict=True)
    )
    assert (requests, batches, rows) == (2, 2, 5)  # the 1-row and the 4-row calls only

    def dropped(reason: str) -> float:
        name = "inference_rejected_requests_total"
        return counter(after, name, reason=reason) - counter(before, name, reason=reason)

    assert dropped("cancelled") >= 1  # the abandoned call (the late one may be either)
    assert dropped("deadline") + dropped("cancelled") == 2


def test_sigterm_drains_grpc_calls(tiny_model_repository: Path, tmp_path: Path) -> None:
    """The first SIGTERM: health NOT_SERVING, new calls UNAVAILABLE, the call in flight is
    answered, the process exits 0."""
    with gated_server(tiny_model_repository, tmp_path) as (server, url, gate):
        assert health(url) == health_pb2.HealthCheckResponse.SERVING

        async def run() -> None:
            client = triton_aio.InferenceServerClient(url)
            try:
                computing = asyncio.ensure_future(infer(client, 2))
                await until(entered(gate).exists)
                server.process.send_signal(signal.SIGTERM)
                not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
                await asyncio.to_thread(wait_until, lambda: health(url) == not_serving)
                with pytest.raises(InferenceServerException) as raised:
                    await infer(client, 1)
                assert raised.value.status() == "StatusCode.UNAVAILABLE"
                assert "shutting down" in (raised.value.message() or "")
                assert not await client.is_server_ready()
                gate.unlink()
                assert (await computing).as_numpy("label").shape == (2,)  # 0 lost
            finally:
                await client.close()

        asyncio.run(run())
        assert server.process.wait(timeout=60) == 0
    assert "Traceback" not in server.log()


def test_repository_extension(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model_version(root, "mnist", 1, seed=1)
    port = free_port()
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "ops"\nkey = "ops-key-0123456"\nscopes = ["admin"]\n')
    env = {
        "SERVING_MODEL_REPOSITORY": str(root),
        "SERVING_MODEL_POLL_INTERVAL_S": "0",
        "SERVING_GRPC_PORT": str(port),
        "SERVING_KEYS_FILE": str(keys),
    }
    admin = {"authorization": "Bearer ops-key-0123456"}
    tensor = triton.InferInput("pixels", [1, 784], "FP32")
    tensor.set_data_from_numpy(synthetic_images(1, seed=16))
    with serving_process(env, tmp_path / "server.log"):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            with pytest.raises(InferenceServerException) as raised:
                client.get_model_repository_index()  # the control API needs the admin key
            assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
            index = client.get_model_repository_index(as_json=True, headers=admin)
            assert index == {"models": [{"name": "mnist", "version": "1", "state": "READY"}]}
            write_model_version(root, "mnist", 2, seed=2)  # polling is off: load picks it up
            client.load_model("mnist", headers=admin)
            assert list(client.get_model_metadata("mnist").versions) == ["2"]
            assert client.infer("mnist", [tensor]).get_response().model_version == "2"
            client.unload_model("mnist", headers=admin)
            assert not client.is_model_ready("mnist")
            assert not client.is_server_ready()
            with pytest.raises(InferenceServerException, match="unloaded") as raised:
                client.infer("mnist", [tensor])
            assert raised.value.status() == "StatusCode.NOT_FOUND"
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = triton_grpc.GRPCInferenceServiceStub(channel)
                metadata = tuple(admin.items())
                ready_only = stub.RepositoryIndex(
                    triton_pb.RepositoryIndexRequest(ready=True), metadata=metadata
                )
                everything = stub.RepositoryIndex(
                    triton_pb.RepositoryIndexRequest(), metadata=metadata
                )
            assert list(ready_only.models) == []
            assert {(m.version, m.state, m.reason) for m in everything.models} == {
                ("2", "UNAVAILABLE", "unloaded"),
                ("1", "UNAVAILABLE", "unloaded"),
            }
            client.load_model("mnist", headers=admin)
            assert client.is_model_ready("mnist", "2")
            with pytest.raises(InferenceServerException, match="unknown model") as raised:
                client.load_model("other", headers=admin)
            assert raised.value.status() == "StatusCode.NOT_FOUND"
        finally:
            client.close()


def test_a_taken_grpc_port_fails_the_start_with_one_clear_line(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
            "SERVING_GRPC_PORT": str(port),
        }
        server = ServerProcess(tmp_path / "server.log", env=env, cwd=REPO)
        with pytest.raises(RuntimeError, match="before ready"):
            server.start()
    assert server.process.returncode == 3  # uvicorn's start-up failure: no restart loop
    assert f"cannot serve gRPC on 127.0.0.1:{port}" in server.log()
