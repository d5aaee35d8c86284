"""The OIP codec on its own: infer bodies (JSON and binary tensors, compressed or not) -> pixels,
outputs -> the response body, errors -> OIP's shape. The HTTP routes' tests cover the same
through a real app (tests/serving/api/v2/)."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import msgspec
import numpy as np
import pytest

from serving.batching import Outputs
from serving.pipeline import oip
from serving.pipeline.contract import Contract
from serving.pipeline.errors import MalformedBodyError, Status
from serving.pipeline.head import RequestHead

CONTRACT = Contract(
    model_name="mnist",
    model_version="3",
    input_name="pixels",
    output_name="probabilities",
    features=784,
    classes=10,
    max_instances=4,
    side=28,
)
LIMIT = 1 << 20


def tensor(data: Any = None, **fields: Any) -> dict[str, Any]:
    return {"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": data, **fields}


def body(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **fields}).encode()


def decode(raw: bytes, head: RequestHead | None = None) -> oip.Request:
    return oip.decode(head or RequestHead(), raw, CONTRACT, LIMIT)


def test_fp32_json_data_is_taken_as_is_and_uint8_is_scaled() -> None:
    pixels = np.linspace(0, 1, 784, dtype=np.float32)
    fp32 = decode(body(tensor(pixels.tolist())))
    np.testing.assert_array_equal(fp32.pixels, pixels[None])
    raw = np.arange(784) % 256
    uint8 = decode(body(tensor(raw.tolist(), datatype="UINT8")))
    np.testing.assert_allclose(uint8.pixels, raw[None] / 255.0, rtol=1e-6)
    assert uint8.pixels.dtype == np.float32
    nested = decode(body(tensor([[pixels.tolist()]], shape=[1, 784])))  # data may nest
    np.testing.assert_array_equal(nested.pixels, pixels[None])


def test_binary_tensor_data_follows_the_json_header() -> None:
    rows = np.random.default_rng(1).integers(0, 256, (3, 784), dtype=np.uint8)
    header = body(
        tensor(shape=[3, 784], datatype="UINT8", parameters={"binary_data_size": rows.size}),
        outputs=[{"name": "label", "parameters": {"binary_data": True}}],
    )
    head = RequestHead(header_length=b"%d" % len(header))
    request = decode(header + rows.tobytes(), head)
    np.testing.assert_allclose(request.pixels, rows / 255.0, rtol=1e-6)
    assert request.outputs == [("label", True)]


def test_compressed_bodies_are_inflated_within_the_limit() -> None:
    raw = body(tensor([0.5] * 784))
    for encoding, packed in (
        (b"gzip", gzip.compress(raw)),
        (b"deflate", zlib.compress(raw)),
    ):
        request = decode(packed, RequestHead(content_encoding=encoding))
        assert request.pixels.shape == (1, 784)
    bomb = gzip.compress(b" " * (LIMIT + 10))
    with pytest.raises(MalformedBodyError, match="larger than"):
        decode(bomb, RequestHead(content_encoding=b"gzip"))
    with pytest.raises(MalformedBodyError, match="truncated"):
        decode(gzip.compress(raw)[:-10], RequestHead(content_encoding=b"gzip"))
    with pytest.raises(MalformedBodyError, match="unsupported Content-Encoding"):
        decode(raw, RequestHead(content_encoding=b"br"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body(tensor([0.5] * 784, name="image")), "unknown input 'image'"),
        (body(tensor([0.5] * 784, datatype="FP64")), "datatype 'FP64'"),
        (body(tensor([0.5] * 783)), "data has 783 elements"),
        (body(tensor([0.5] * 28, shape=[1, 28])), "expected [n, 784]"),
        (body(tensor([0.5] * 784 * 5, shape=[5, 784])), "1 to 4 instances; got 5"),
        (body(tensor([1.5] * 784)), "value 1.5 at pixel 0 is outside [0, 1]"),
        (body(tensor([256] * 784, datatype="UINT8")), "UINT8 data must be integers 0..255"),
        (body(tensor([0.5] * 784, parameters={"binary_data_size": 3136})), "both JSON data"),
        (body(tensor([0.5] * 784), tensor([0.5] * 784)), "exactly one input"),
        (body(tensor([0.5] * 784), outputs=[{"name": "logits"}]), "unknown output 'logits'"),
        (body(tensor([0.5] * 784), parameters={"timeout": -1}), "positive number"),
        (
            body(tensor([0.5] * 784, parameters={"shared_memory_region": "r"})),
            "'shared_memory_region' is not supported",
        ),
        (b"{not json", "not valid JSON"),
        (b'{"inputs": 3}', "invalid inference request"),
    ],
)
def test_every_fault_is_a_400_that_names_it(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedBodyError, match=message.replace("[", r"\[").replace(".", r"\.")):
        decode(raw)


def test_a_binary_size_that_disagrees_with_the_body_is_refused() -> None:
    header = body(tensor(shape=[1, 784], datatype="UINT8", parameters={"binary_data_size": 784}))
    head = RequestHead(header_length=b"%d" % len(header))
    with pytest.raises(MalformedBodyError, match="past the end"):
        decode(header + b"\x00" * 10, head)
    with pytest.raises(MalformedBodyError, match="inputs declare 784"):
        decode(header + b"\x00" * 800, head)
    with pytest.raises(MalformedBodyError, match="past the end of the"):
        decode(header, RequestHead(header_length=b"%d" % (len(header) + 1)))


def test_parameters_timeout_becomes_the_deadline_in_seconds() -> None:
    request = decode(body(tensor([0.5] * 784), parameters={"timeout": 250_000}))
    assert request.timeout_s == pytest.approx(0.25)
    assert decode(body(tensor([0.5] * 784))).timeout_s is None


@pytest.mark.parametrize(
    ("head", "rows"),
    [
        (RequestHead(content_length=None), 1),
        (RequestHead(content_length=784 * 24 * 3), 3),  # JSON: at most 24 bytes a pixel
        (RequestHead(content_length=100 + 784 * 4 * 2, header_length=b"100"), 2),  # FP32 binary
        (RequestHead(content_length=5000, header_length=b"x"), 1),
    ],
)
def test_expected_rows_is_a_lower_bound_from_the_headers(head: RequestHead, rows: int) -> None:
    assert oip.expected_rows(head, 784) == rows


def test_outputs_are_encoded_as_asked_json_or_binary_in_order() -> None:
    probabilities = np.eye(10, dtype=np.float32)[[7, 2]]
    outputs = Outputs.of(probabilities)
    request = oip.Request(
        probabilities, "a1", [("label", False), ("probabilities", True)], timeout_s=None
    )
    encoded = oip.encode(outputs, request, CONTRACT, ["id-1", "id-2"])
    assert encoded.header_length is not None
    header = json.loads(encoded.body[: encoded.header_length])
    assert header["model_name"] == "mnist"
    assert header["model_version"] == "3"
    assert header["id"] == "a1"
    assert header["parameters"] == {"prediction_ids": ["id-1", "id-2"]}
    label, probs = header["outputs"]
    assert label == {"name": "label", "datatype": "INT64", "shape": [2], "data": [7, 2]}
    assert probs["parameters"] == {"binary_data_size": 80}
    tail = np.frombuffer(encoded.body[encoded.header_length :], dtype="<f4").reshape(2, 10)
    np.testing.assert_array_equal(tail, probabilities)
    json_only = oip.encode(
        outputs, oip.Request(probabilities, None, [("label", False)], None), CONTRACT, []
    )
    assert json_only.header_length is None


def test_errors_take_the_oip_shape_and_its_statuses() -> None:
    assert oip.error(Status(422, "bad pixels")) == (400, b'{"error":"bad pixels"}')
    assert oip.error(Status(415, "no")) == (400, b'{"error":"no"}')
    code, raw = oip.error(Status(503, "busy", retry_after_s=2))
    assert code == 503
    assert msgspec.json.decode(raw) == {"error": "busy"}
    assert oip.is_oip_path("/v2")
    assert oip.is_oip_path("/v2/models/x")
    assert not oip.is_oip_path("/v2x")
    assert not oip.is_oip_path("/v1/predict")
