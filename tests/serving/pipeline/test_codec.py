"""The two HTTP codecs behind one interface: each turns the model's outputs or an error into a
complete answer in its wire format, and says how it reads deadlines and row estimates."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from serving.batching import Outputs
from serving.pipeline.codec import JSON, OIP, V1, Answer, HttpCodec
from serving.pipeline.contract import Contract
from serving.pipeline.errors import InvalidInputError, Status
from serving.pipeline.head import read_head
from serving.pipeline.oip import BINARY

CONTRACT = Contract("mnist", "3", "pixels", "probabilities", 4, 3, 8, 2)
OUTPUTS = Outputs.of(np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]], dtype=np.float32))
ROWS = [[0.0, 0.5, 1.0, 0.25], [1.0, 1.0, 0.0, 0.0]]


def test_each_codec_names_its_protocol_and_where_its_deadline_comes_from() -> None:
    codecs: list[HttpCodec] = [V1, OIP]  # both satisfy the interface (checked by mypy)
    assert [(c.name, c.timeout_header) for c in codecs] == [("v1", True), ("v2", False)]


def test_v1_decodes_json_and_encodes_predictions_with_their_ids() -> None:
    head = read_head([(b"content-type", b"application/json")])
    decoded = V1.decode(head, json.dumps({"instances": ROWS}).encode(), CONTRACT, 1 << 20)
    assert decoded.pixels.tolist() == ROWS
    assert decoded.timeout_s is None  # v1's deadline is the header's
    answer = V1.encode(OUTPUTS, decoded, CONTRACT, ["id-0", "id-1"])
    assert (answer.status, answer.content_type, answer.headers) == (200, JSON, [])
    body = json.loads(answer.body)
    assert body["model"] == {"name": "mnist", "version": "3"}
    assert [p["label"] for p in body["predictions"]] == [1, 0]
    assert [p["prediction_id"] for p in body["predictions"]] == ["id-0", "id-1"]


def test_v1_errors_are_its_json_object_with_the_request_id() -> None:
    answer = V1.error(Status(422, "instance 1 is short"), "rid-7")
    assert answer == Answer(422, answer.body)
    assert json.loads(answer.body) == {
        "error": {"status": 422, "message": "instance 1 is short", "request_id": "rid-7"}
    }


def test_v1_refuses_a_body_that_breaks_the_contract() -> None:
    head = read_head([(b"content-type", b"application/json")])
    with pytest.raises(InvalidInputError):
        V1.decode(head, json.dumps({"instances": [[0.5] * 3]}).encode(), CONTRACT, 1 << 20)


def oip_request(*, binary: bool, timeout_us: int | None = None) -> bytes:
    parameters: dict[str, object] = {"timeout": timeout_us} if timeout_us is not None else {}
    return json.dumps(
        {
            "id": "req-1",
            "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 4], "data": ROWS}],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": binary}}],
            "parameters": parameters,
        }
    ).encode()


def test_oip_json_outputs_are_plain_json() -> None:
    head = read_head([(b"content-type", b"application/json")])
    decoded = OIP.decode(head, oip_request(binary=False, timeout_us=250_000), CONTRACT, 1 << 20)
    assert decoded.pixels.tolist() == ROWS
    assert decoded.timeout_s == pytest.approx(0.25)  # OIP puts its deadline in the body
    answer = OIP.encode(OUTPUTS, decoded, CONTRACT, ["a", "b"])
    assert (answer.status, answer.content_type, answer.headers) == (200, JSON, [])
    body = json.loads(answer.body)
    assert (body["id"], body["model_name"], body["model_version"]) == ("req-1", "mnist", "3")
    assert body["parameters"] == {"prediction_ids": ["a", "b"]}


def test_oip_binary_outputs_say_where_the_json_header_ends() -> None:
    head = read_head([(b"content-type", b"application/json")])
    decoded = OIP.decode(head, oip_request(binary=True), CONTRACT, 1 << 20)
    answer = OIP.encode(OUTPUTS, decoded, CONTRACT, ["a", "b"])
    assert answer.content_type == BINARY
    ((name, value),) = answer.headers
    assert name == b"inference-header-content-length"
    split = int(value)
    header = msgspec.json.decode(answer.body[:split])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 2 * 3 * 4}
    values = np.frombuffer(answer.body[split:], dtype="<f4").reshape(2, 3)
    assert values.tolist() == OUTPUTS.probabilities.tolist()


@pytest.mark.parametrize(("code", "sent"), [(422, 400), (415, 400), (404, 404), (503, 503)])
def test_oip_errors_are_a_string_and_fold_422_and_415_into_400(code: int, sent: int) -> None:
    answer = OIP.error(Status(code, "why"), "rid-ignored")
    assert answer.status == sent
    assert json.loads(answer.body) == {"error": "why"}  # OIP's shape: no request id in the body


def test_row_estimates_come_from_the_headers_alone() -> None:
    raw = read_head([(b"content-type", b"application/octet-stream"), (b"content-length", b"12")])
    assert V1.expected_rows(raw, 4) == 3  # 12 uint8 bytes of 4-pixel images
    assert OIP.expected_rows(read_head([]), 4) >= 1
