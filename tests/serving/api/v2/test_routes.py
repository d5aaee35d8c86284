"""The /v2 routes in process (Litestar's TestClient, raw HTTP bodies) on the real tiny model:
JSON and binary tensor data, compression, every malformed body, and the OIP error shape."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from serving.lifecycle import Service
from serving.settings import Settings
from tests.conftest import AppStarter
from tests.support.tiny_model import synthetic_images
from tests.support.waiting import HANG_S, wait_until

from ..conftest import Gated

Array = npt.NDArray[np.float32]
Reference = Callable[[Array], Array]
INFER = "/v2/models/mnist/infer"


def binary_request(
    header: dict[str, Any], tail: bytes, header_length: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A binary-extension body: the JSON header, then ``tail``."""
    raw = json.dumps(header).encode()
    length = len(raw) if header_length is None else header_length
    return raw + tail, {"Inference-Header-Content-Length": str(length)}


def pixels_input(pixels: Array, **extra: Any) -> dict[str, Any]:
    return {"name": "pixels", "shape": list(pixels.shape), "datatype": "FP32", **extra}


def read_binary_response(response: Any) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Split a binary response into its JSON header and its outputs as arrays."""
    length = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:length])
    arrays, offset = {}, length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        dtype = {"FP32": "<f4", "INT64": "<i8"}[output["datatype"]]
        chunk = response.content[offset : offset + size]
        arrays[output["name"]] = np.frombuffer(chunk, dtype=dtype).reshape(output["shape"])
        offset += size
    assert offset == len(response.content)
    return header, arrays


@pytest.fixture
def client(app_client: AppStarter) -> Any:
    with app_client() as test_client:
        yield test_client


# ---------------------------------------------------------------------- 200
def test_json_in_json_out_matches_onnxruntime(client: Any, reference: Reference) -> None:
    pixels = synthetic_images(3, seed=4)
    body = {"id": "r-1", "inputs": [pixels_input(pixels, data=pixels.ravel().tolist())]}
    response = client.post(INFER, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["id"] == "r-1"
    assert (answer["model_name"], answer["model_version"]) == ("mnist", "1")
    probabilities, label = answer["outputs"]
    assert (probabilities["name"], probabilities["datatype"]) == ("probabilities", "FP32")
    assert probabilities["shape"] == [3, 10]
    expected = reference(pixels)
    np.testing.assert_allclose(
        np.array(probabilities["data"]).reshape(3, 10), expected, rtol=1e-5, atol=1e-6
    )
    assert label == {
        "name": "label",
        "datatype": "INT64",
        "shape": [3],
        "data": expected.argmax(axis=1).tolist(),
    }


def test_nested_data_and_unknown_parameters_are_accepted(client: Any, reference: Reference) -> None:
    pixels = synthetic_images(2, seed=5)
    body = {
        "parameters": {"priority": 3, "something_new": {"x": 1}},
        "inputs": [pixels_input(pixels, data=pixels.tolist(), parameters={"whatever": True})],
        "outputs": [{"name": "label", "parameters": {"also_unknown": 1}}],
    }
    response = client.post(INFER, json=body)
    assert response.status_code == 200
    (label,) = response.json()["outputs"]
    assert label["data"] == reference(pixels).argmax(axis=1).tolist()


def test_binary_fp32_in_binary_out(client: Any, reference: Reference) -> None:
    pixels = synthetic_images(4, seed=6)
    header = {
        "inputs": [pixels_input(pixels, parameters={"binary_data_size": pixels.nbytes})],
        "outputs": [
            {"name": "probabilities", "parameters": {"binary_data": True}},
            {"name": "label", "parameters": {"binary_data": False}},
        ],
    }
    content, headers = binary_request(header, pixels.astype("<f4").tobytes())
    response = client.post(INFER, content=content, headers=headers)
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    probabilities = np.frombuffer(response.content[length:], dtype="<f4").reshape(4, 10)
    np.testing.assert_allclose(probabilities, reference(pixels), rtol=1e-5, atol=1e-6)
    assert answer["outputs"][0]["parameters"] == {"binary_data_size": 160}
    assert answer["outputs"][1]["data"] == reference(pixels).argmax(axis=1).tolist()


def test_uint8_binary_is_scaled_and_request_level_binary_output(
    client: Any, reference: Reference
) -> None:
    raw = np.random.default_rng(7).integers(0, 256, (2, 784), dtype=np.uint8)
    header = {
        "parameters": {"binary_data_output": True},
        "inputs": [
            {"name": "pixels", "shape": [2, 784], "datatype": "UINT8",
             "parameters": {"binary_data_size": raw.nbytes}}
        ],
    }  # fmt: skip
    content, headers = binary_request(header, raw.tobytes())
    response = client.post("/v2/models/mnist/versions/1/infer", content=content, headers=headers)
    assert response.status_code == 200
    _, arrays = read_binary_response(response)
    expected = reference(raw.astype(np.float32) / np.float32(255))
    np.testing.assert_allclose(arrays["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert arrays["label"].tolist() == expected.argmax(axis=1).tolist()


def test_uint8_json_data(client: Any, reference: Reference) -> None:
    raw = np.random.default_rng(8).integers(0, 256, (1, 784), dtype=np.uint8)
    body = {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "UINT8",
                        "data": raw.ravel().tolist()}]}  # fmt: skip
    response = client.post(INFER, json=body)
    assert response.status_code == 200
    expected = reference(raw.astype(np.float32) / np.float32(255))
    assert response.json()["outputs"][1]["data"] == expected.argmax(axis=1).tolist()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies(client: Any, reference: Reference, encoding: str) -> None:
    pixels = synthetic_images(2, seed=9)
    header = {"inputs": [pixels_input(pixels, parameters={"binary_data_size": pixels.nbytes})]}
    content, headers = binary_request(header, pixels.tobytes())
    packed = gzip.compress(content) if encoding == "gzip" else zlib.compress(content)
    response = client.post(INFER, content=packed, headers={**headers, "Content-Encoding": encoding})
    assert response.status_code == 200
    assert response.json()["outputs"][1]["data"] == reference(pixels).argmax(axis=1).tolist()


def test_metadata_health_and_readiness(client: Any) -> None:
    server = client.get("/v2").json()
    assert server["name"] == "mnist-inference"
    assert "binary_tensor_data" in server["extensions"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    model = client.get("/v2/models/mnist").json()
    assert model["versions"] == ["1"]
    assert model["platform"] == "onnx_onnxv1"
    assert model["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}]
    assert client.get("/v2/models/mnist/versions/1").json()["versions"] == ["1"]
    assert client.get("/v2/models/mnist/versions/1/ready").json()["ready"] is True


# ---------------------------------------------------------------------- errors
def post_error(client: Any, status: int, **kwargs: Any) -> str:
    """POST to infer, expect ``status`` with an OIP error body; the message."""
    response = client.post(INFER, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str)
    message: str = body["error"]
    return message


def test_header_length_past_the_body(client: Any) -> None:
    pixels = synthetic_images(1)
    header = {"inputs": [pixels_input(pixels, parameters={"binary_data_size": pixels.nbytes})]}
    content, headers = binary_request(header, b"", header_length=10_000)
    message = post_error(client, 400, content=content, headers=headers)
    assert "past the end" in message


@pytest.mark.parametrize(
    ("declared", "sent", "fragment"),
    [
        (3136 - 4, 3136 - 4, "does not match its shape"),
        (3136, 3136 - 4, "past the end of the body"),
        (3136, 3136 + 8, "inputs declare 3136"),
    ],
)
def test_binary_size_mismatch(client: Any, declared: int, sent: int, fragment: str) -> None:
    header = {"inputs": [pixels_input(np.zeros((1, 784), np.float32),
                                      parameters={"binary_data_size": declared})]}  # fmt: skip
    content, headers = binary_request(header, bytes(sent))
    assert fragment in post_error(client, 400, content=content, headers=headers)


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        ({"shape": [2, 784], "data": [0.5] * 784}, "has 784 elements, its shape needs 1568"),
        ({"shape": [1, 784], "data": [[0.5] * 784, [0.5] * 10]}, "ragged"),
        ({"shape": [1, 784], "data": ["a"] * 784}, "must be a number"),
        ({"shape": [1, 28, 28], "data": [0.5] * 784}, "expected [n, 784]"),
        ({"shape": [1, 784], "data": [2.0] * 784}, "outside [0, 1]"),
        ({"shape": [1, 784], "datatype": "UINT8", "data": [256] * 784}, "integers 0..255"),
        ({"shape": [1, 784], "datatype": "UINT8", "data": [0.5] * 784}, "integers 0..255"),
        ({"shape": [1, 784], "datatype": "FP64", "data": [0.5] * 784}, "datatype 'FP64'"),
        ({"name": "image", "shape": [1, 784], "data": [0.5] * 784}, "unknown input 'image'"),
        ({"shape": [1, 784]}, "no data and no binary_data_size"),
        ({"shape": [300, 784], "data": [0.0] * 784 * 300}, "1 to 256 instances"),
        (
            {"shape": [1, 784], "data": [0.5] * 784, "parameters": {"shared_memory_region": "r"}},
            "'shared_memory_region' is not supported",
        ),
    ],
)
def test_bad_inputs_are_400_naming_the_problem(
    client: Any, tensor: dict[str, Any], fragment: str
) -> None:
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", **tensor}]}
    assert fragment in post_error(client, 400, json=body)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"inputs": 3}', "invalid inference request"),
        (b'{"inputs": []}', "exactly one input"),
    ],
)
def test_malformed_requests(client: Any, body: bytes, fragment: str) -> None:
    assert fragment in post_error(client, 400, content=body)


def test_bad_outputs_and_parameters(client: Any) -> None:
    data = synthetic_images(1).ravel().tolist()
    base = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784], "data": data}]}
    unknown = {**base, "outputs": [{"name": "logits"}]}
    assert "unknown output 'logits'" in post_error(client, 400, json=unknown)
    classify = {**base, "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]}
    assert "'classification' is not supported" in post_error(client, 400, json=classify)
    for timeout in (-1, "soon", 0):
        bad = {**base, "parameters": {"timeout": timeout}}
        assert "timeout" in post_error(client, 400, json=bad)


def test_bad_header_length_and_encodings(client: Any, settings: Settings) -> None:
    headers = {"Inference-Header-Content-Length": "ten"}
    assert "non-negative integer" in post_error(client, 400, content=b"{}", headers=headers)
    brotli = {"Content-Encoding": "br"}
    assert "unsupported Content-Encoding" in post_error(client, 400, content=b"x", headers=brotli)
    garbage = {"Content-Encoding": "gzip"}
    assert "not valid gzip" in post_error(client, 400, content=b"not gzip", headers=garbage)
    bomb = gzip.compress(bytes(settings.max_body_bytes + 1))
    assert "larger than" in post_error(
        client, 400, content=bomb, headers={"Content-Encoding": "gzip"}
    )


def test_unknown_model_version_path_and_method_are_404_405_in_oip_shape(client: Any) -> None:
    data = synthetic_images(1).ravel().tolist()
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 784], "data": data}]}
    for path, status in [
        ("/v2/models/other/infer", 404),
        ("/v2/models/mnist/versions/2/infer", 404),
        ("/v2/nowhere", 404),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == status
        assert isinstance(response.json()["error"], str)
    for path in ("/v2/models/other", "/v2/models/mnist/versions/2", "/v2/models/other/ready"):
        response = client.get(path)
        assert response.status_code == 404
        assert isinstance(response.json()["error"], str)
    wrong_method = client.get(INFER)
    assert wrong_method.status_code == 405
    assert isinstance(wrong_method.json()["error"], str)
    assert client.get("/v1/nowhere").json()["error"]["status"] == 404  # v1 keeps its shape


def test_body_over_max_body_bytes_is_413_in_oip_shape(client: Any, settings: Settings) -> None:
    message = post_error(client, 413, content=bytes(settings.max_body_bytes + 1))
    assert message


def test_queue_full_is_503_with_retry_after(
    tiny_model_repository: Path, gated: Gated, app_client: AppStarter
) -> None:
    settings = Settings(
        model_repository=tiny_model_repository, max_instances=4, max_queue_size=4, inline_max_rows=0
    )
    one = {"inputs": [pixels_input(synthetic_images(1), data=synthetic_images(1).tolist())]}
    four = {"inputs": [pixels_input(synthetic_images(4), data=synthetic_images(4).tolist())]}
    with app_client(settings, model_loader=gated.loader()) as client:
        service: Service = client.service
        session, batcher = gated.session, service.batcher
        assert session is not None
        assert batcher is not None
        session.gate.clear()
        session.entered.clear()
        results: list[Any] = []
        threads = [threading.Thread(target=lambda b=b: results.append(client.post(INFER, json=b)))
                   for b in (one, four)]  # fmt: skip
        threads[0].start()
        wait_until(session.entered.is_set)  # the first batch is held inside session.run
        threads[1].start()
        wait_until(lambda: batcher.queued_rows == 4)
        response = client.post(INFER, json=one)
        session.gate.set()
        for thread in threads:
            thread.join(timeout=HANG_S)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "queue full" in response.json()["error"]
    assert sorted(r.status_code for r in results) == [200, 200]


def test_parameters_timeout_is_the_deadline(
    tiny_model_repository: Path, gated: Gated, app_client: AppStarter
) -> None:
    # A 20 s default deadline: the body's 50 ms is told apart by a bound no loaded machine
    # reaches (the batch ahead is held until the answer came, so only a deadline ends it).
    settings = Settings(
        model_repository=tiny_model_repository, inline_max_rows=0, request_timeout_ms=20_000
    )
    pixels = synthetic_images(1)
    with app_client(settings, model_loader=gated.loader()) as client:
        session = gated.session
        assert session is not None
        session.gate.clear()
        session.entered.clear()
        results: list[Any] = []
        body = {"inputs": [pixels_input(pixels, data=pixels.tolist())]}
        thread = threading.Thread(target=lambda: results.append(client.post(INFER, json=body)))
        thread.start()
        wait_until(session.entered.is_set)
        late = {**body, "parameters": {"timeout": 50_000}}  # 50 ms, in microseconds
        started = time.monotonic()
        response = client.post(INFER, json=late)
        waited = time.monotonic() - started
        session.gate.set()
        thread.join(timeout=HANG_S)
    assert response.status_code == 504
    assert isinstance(response.json()["error"], str)
    # At least its own 50 ms (counted from arrival, after ``started``); far less than the
    # default 20 s it would have waited without the parameter.
    assert 0.05 <= waited < 10
    assert results[0].status_code == 200
