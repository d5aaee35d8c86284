"""The official Triton client (``tritonclient.http``, sync and aio) against a real server:
metadata, JSON and binary infer both ways, versioned routes, the errors, and co-batching."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from tritonclient.utils import InferenceServerException

from tests.support.server import RunningServer, serving_process
from tests.support.tiny_model import synthetic_images, write_model_version

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Array = npt.NDArray[np.float32]
Reference = Callable[[Array], Array]


@pytest.fixture(scope="module")
def server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("tritonclient") / "server.log"
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_MAX_BATCH_DELAY_MS": "2",
    }
    with serving_process(env, log) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    sync = triton.InferenceServerClient(server.base_url.removeprefix("http://"))
    yield sync
    sync.close()


def pixels_input(
    pixels: npt.NDArray[Any], *, binary: bool, datatype: str = "FP32"
) -> triton.InferInput:
    tensor = triton.InferInput("pixels", list(pixels.shape), datatype)
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    return tensor


def test_server_and_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist")
    assert client.is_model_ready("mnist", "1")
    assert not client.is_model_ready("mnist", "2")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata()
    assert server["name"] == "mnist-inference"
    assert "binary_tensor_data" in server["extensions"]
    for version in ("", "1"):
        model = client.get_model_metadata("mnist", version)
        assert model["name"] == "mnist"
        assert model["versions"] == ["1"]
        assert model["platform"] == "onnx_onnxv1"
        assert model["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}]
        assert {o["name"] for o in model["outputs"]} == {"probabilities", "label"}


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_json_and_binary_both_ways(
    client: triton.InferenceServerClient,
    reference: Reference,
    binary_in: bool,
    binary_out: bool,
) -> None:
    pixels = synthetic_images(3, seed=11)
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary_out),
        triton.InferRequestedOutput("label", binary_data=binary_out),
    ]
    result = client.infer(
        "mnist", [pixels_input(pixels, binary=binary_in)], outputs=outputs, request_id="req-7"
    )
    expected = reference(pixels)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-5, atol=1e-6)
    assert result.as_numpy("label").tolist() == expected.argmax(axis=1).tolist()
    response = result.get_response()
    assert response["id"] == "req-7"
    assert response["model_version"] == "1"
    binary = [o for o in response["outputs"] if "binary_data_size" in o.get("parameters", {})]
    assert len(binary) == (2 if binary_out else 0)


def test_defaults_uint8_versioned_route_and_compression(
    client: triton.InferenceServerClient, reference: Reference
) -> None:
    raw = np.random.default_rng(12).integers(0, 256, (2, 784), dtype=np.uint8)
    expected = reference(raw.astype(np.float32) / np.float32(255)).argmax(axis=1).tolist()
    tensor = pixels_input(raw, binary=True, datatype="UINT8")
    for compression in (None, "gzip", "deflate"):
        result = client.infer(
            "mnist",
            [tensor],
            model_version="1",
            request_compression_algorithm=compression,
            timeout=2_000_000,
        )  # no outputs requested: every output, binary (the client's default)
        assert result.as_numpy("label").tolist() == expected
        assert result.as_numpy("probabilities").shape == (2, 10)


@pytest.mark.parametrize(
    ("call", "status", "fragment"),
    [
        (lambda c, x: c.get_model_metadata("other"), "404", "unknown model 'other'"),
        (lambda c, x: c.get_model_metadata("mnist", "3"), "404", "no served version '3'"),
        (lambda c, x: c.infer("other", [pixels_input(x, binary=True)]), "404", "unknown model"),
        (
            lambda c, x: c.infer("mnist", [pixels_input(x, binary=True)], model_version="3"),
            "404",
            "no served version",
        ),
        (
            lambda c, x: c.infer("mnist", [pixels_input(x * 3, binary=True)]),
            "400",
            "outside [0, 1]",
        ),
        (
            lambda c, x: c.infer(
                "mnist", [pixels_input(x.astype(np.float64), binary=False, datatype="FP64")]
            ),
            "400",
            "datatype 'FP64'",
        ),
        (
            lambda c, x: c.infer("mnist", [pixels_input(x.reshape(1, 2, 784), binary=True)]),
            "400",
            "expected [n, 784]",
        ),
        (
            lambda c, x: c.infer(
                "mnist",
                [pixels_input(x, binary=True)],
                outputs=[triton.InferRequestedOutput("logits")],
            ),
            "400",
            "unknown output 'logits'",
        ),
        (
            lambda c, x: c.infer(
                "mnist",
                [pixels_input(x, binary=True)],
                outputs=[triton.InferRequestedOutput("probabilities", class_count=3)],
            ),
            "400",
            "'classification' is not supported",
        ),
    ],
)
def test_errors_reach_the_client_as_messages(
    client: triton.InferenceServerClient,
    call: Callable[[triton.InferenceServerClient, Array], object],
    status: str,
    fragment: str,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        call(client, synthetic_images(2, seed=13))
    assert raised.value.status() == status
    assert fragment in str(raised.value)


def _batch_requests(base_url: str) -> tuple[float, float]:
    """(sum, count) of the ``inference_batch_requests`` histogram: requests and batches."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()

    def value(name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
        assert match, name
        return float(match.group(1))

    return value("inference_batch_requests_sum"), value("inference_batch_requests_count")


def test_400_concurrent_aio_requests_are_batched(
    server: RunningServer, reference: Reference
) -> None:
    pixels = synthetic_images(400, seed=14)
    expected = reference(pixels).argmax(axis=1)
    requests_before, batches_before = _batch_requests(server.base_url)

    async def run() -> list[int]:
        aio = triton_aio.InferenceServerClient(
            server.base_url.removeprefix("http://"), conn_limit=400
        )
        try:

            async def one(row: int) -> int:
                tensor = triton_aio.InferInput("pixels", [1, 784], "FP32")
                tensor.set_data_from_numpy(pixels[row : row + 1])
                result = await aio.infer("mnist", [tensor], timeout=20_000_000)
                return int(result.as_numpy("label")[0])

            assert await aio.is_server_ready()
            assert (await aio.get_model_metadata("mnist"))["versions"] == ["1"]
            return await asyncio.gather(*(one(row) for row in range(400)))
        finally:
            await aio.close()

    labels = asyncio.run(run())
    assert labels == expected.tolist()
    requests_after, batches_after = _batch_requests(server.base_url)
    requests, batches = requests_after - requests_before, batches_after - batches_before
    assert requests == 400
    assert batches < requests  # some batches held more than one request


def test_shedding_reaches_the_aio_client_as_503(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    env = {
        "SERVING_MODEL_REPOSITORY": str(tiny_model_repository),
        "SERVING_MAX_QUEUE_SIZE": "1",
        "SERVING_MAX_INSTANCES": "1",
        "SERVING_MAX_BATCH_SIZE": "1",
    }
    pixels = synthetic_images(1, seed=15)

    async def run(base_url: str) -> list[str]:
        aio = triton_aio.InferenceServerClient(base_url.removeprefix("http://"), conn_limit=200)
        tensor = triton_aio.InferInput("pixels", [1, 784], "FP32")
        tensor.set_data_from_numpy(pixels)

        async def one() -> str:
            try:
                await aio.infer("mnist", [tensor])
            except InferenceServerException as exc:
                return f"{exc.status()} {exc.message()}"
            return "200"

        try:
            return await asyncio.gather(*(one() for _ in range(200)))
        finally:
            await aio.close()

    with serving_process(env, tmp_path / "server.log") as running:
        statuses = asyncio.run(run(running.base_url))
    assert "200" in statuses
    shed = [status for status in statuses if status != "200"]
    assert shed
    assert all(status.startswith("503 queue full") for status in shed)


def test_model_repository_extension(tmp_path: Path) -> None:
    """The control API needs a key with the admin scope: the client sends it on every call."""
    root = tmp_path / "models"
    write_model_version(root, "mnist", 1, seed=1)
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "ops"\nkey = "s3cret-admin-key"\nscopes = ["admin"]\n')
    env = {
        "SERVING_MODEL_REPOSITORY": str(root),
        "SERVING_MODEL_POLL_INTERVAL_S": "0",
        "SERVING_KEYS_FILE": str(keys),
    }
    admin = {"authorization": "Bearer s3cret-admin-key"}
    pixels = synthetic_images(1, seed=16)
    with serving_process(env, tmp_path / "server.log") as running:
        client = triton.InferenceServerClient(running.base_url.removeprefix("http://"))
        try:
            with pytest.raises(InferenceServerException, match="needs an API key"):
                client.get_model_repository_index()  # no key: 401
            assert client.get_model_repository_index(headers=admin) == [
                {"name": "mnist", "version": "1", "state": "READY", "reason": ""}
            ]
            write_model_version(root, "mnist", 2, seed=2)  # polling is off: load picks it up
            client.load_model("mnist", headers=admin)
            assert client.get_model_metadata("mnist")["versions"] == ["2"]
            result = client.infer("mnist", [pixels_input(pixels, binary=True)])
            assert result.get_response()["model_version"] == "2"
            client.unload_model("mnist", headers=admin)
            assert not client.is_model_ready("mnist")
            assert not client.is_server_ready()
            with pytest.raises(InferenceServerException, match="unloaded"):
                client.infer("mnist", [pixels_input(pixels, binary=True)])
            client.load_model("mnist", headers=admin)
            assert client.is_model_ready("mnist", "2")
            with pytest.raises(InferenceServerException, match="unknown model"):
                client.load_model("other", headers=admin)
        finally:
            client.close()
