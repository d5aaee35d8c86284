"""The gRPC infer codec on its own: every accepted form decodes to the same pixels, every bad
request is refused with INVALID_ARGUMENT naming the fault, and tritonclient reads the answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tritonclient.grpc import InferResult
from tritonclient.grpc import service_pb2 as triton_pb

from serving.batching import Outputs
from serving.grpc.codec import (
    InferOptions,
    decode_infer_request,
    encode_infer_response,
    timeout_s,
)
from serving.grpc.errors import StatusError
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.pipeline.contract import Contract

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
Request = pb.ModelInferRequest


def raw_request(values: npt.NDArray[Any], datatype: str, shape: list[int] | None = None) -> Request:
    request = Request(model_name="mnist", id="r-1")
    request.inputs.add(name="pixels", datatype=datatype, shape=shape or list(values.shape))
    request.raw_input_contents.append(values.tobytes())
    return request


def contents_request(values: npt.NDArray[Any], datatype: str) -> Request:
    request = Request(model_name="mnist")
    tensor = request.inputs.add(name="pixels", datatype=datatype, shape=list(values.shape))
    if datatype == "FP32":
        tensor.contents.fp32_contents.extend(values.ravel().tolist())
    else:
        tensor.contents.uint_contents.extend(values.ravel().tolist())
    return request


def fp32_tensor(contents: dict[str, list[Any]]) -> Request:
    """One FP32 [1, 784] input whose ``contents`` fields hold ``contents``."""
    request = Request(model_name="mnist")
    tensor = request.inputs.add(name="pixels", datatype="FP32", shape=[1, 784])
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    return request


def refused(request: Request) -> str:
    with pytest.raises(StatusError) as raised:
        decode_infer_request(request, CONTRACT)
    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    return raised.value.message


@settings(max_examples=25, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(784))))
def test_uint8_raw_uint8_contents_and_fp32_forms_decode_to_the_same_pixels(
    image: npt.NDArray[np.uint8],
) -> None:
    expected = image.astype(np.float32) / np.float32(255)
    forms = [
        raw_request(image, "UINT8"),
        contents_request(image, "UINT8"),
        raw_request(expected, "FP32"),
        contents_request(expected, "FP32"),
    ]
    for request in forms:
        pixels, options = decode_infer_request(request, CONTRACT)
        assert pixels.dtype == np.float32
        np.testing.assert_array_equal(pixels, expected)
        assert options.outputs == ("probabilities", "label")
    assert [decode_infer_request(r, CONTRACT)[1].raw for r in forms] == [True, False, True, False]


def test_options_echo_id_requested_outputs_and_timeout() -> None:
    request = raw_request(np.zeros((1, 784), np.float32), "FP32")
    request.outputs.add(name="label")
    request.outputs.add(name="probabilities")
    request.parameters["timeout"].int64_param = 250_000
    request.parameters["priority"].uint64_param = 1  # accepted, not honoured: one queue
    _, options = decode_infer_request(request, CONTRACT)
    assert options == InferOptions("r-1", ("label", "probabilities"), True, 250_000.0)


def _with(change: Callable[[Request], object]) -> Request:
    request = raw_request(np.full((2, 784), 0.5, np.float32), "FP32")
    change(request)
    return request


def _second_input(request: Request) -> None:
    request.inputs.add(name="extra", datatype="FP32", shape=[1])


def _fp64(request: Request) -> None:
    request.inputs[0].datatype = "FP64"


def _shape(shape: list[int]) -> Callable[[Request], None]:
    def change(request: Request) -> None:
        del request.inputs[0].shape[:]
        request.inputs[0].shape.extend(shape)

    return change


def _raw(data: bytes) -> Callable[[Request], None]:
    def change(request: Request) -> None:
        request.raw_input_contents[0] = data

    return change


def _both(request: Request) -> None:
    request.inputs[0].contents.fp32_contents.append(0.0)


def _parameter(key: str, where: str = "input") -> Callable[[Request], None]:
    def change(request: Request) -> None:
        owner = request.inputs[0] if where == "input" else request.outputs.add(name="label")
        owner.parameters[key].string_param = "x"

    return change


def _timeout(value: float) -> Callable[[Request], None]:
    def change(request: Request) -> None:
        request.parameters["timeout"].double_param = value

    return change


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: r.inputs[0].__setattr__("name", "image"), "unknown input 'image'"),
        (_second_input, "expected exactly one input 'pixels'"),
        (_fp64, "datatype 'FP64'"),
        (_shape([2, 28, 28]), "expected [n, 784]"),
        (_shape([0, 784]), "expected [n, 784] with n >= 1"),
        (_shape([5, 784]), "1 to 4 instances; got 5"),
        (_raw(b"\0" * 100), "holds 100 bytes, its shape and datatype need 6272"),
        (lambda r: r.raw_input_contents.append(b""), "2 entries for 1 input"),
        (_both, "both contents and raw_input_contents"),
        (_raw(np.full((2, 784), 1.5, np.float32).tobytes()), "is outside [0, 1]"),
        (_raw(np.full((2, 784), np.nan, np.float32).tobytes()), "is not finite"),
        (lambda r: r.outputs.add(name="logits"), "unknown output 'logits'"),
        (_parameter("shared_memory_region"), "'shared_memory_region' is not supported"),
        (_parameter("classification", "output"), "'classification' is not supported"),
        (_timeout(-1.0), "positive number of microseconds"),
        (_timeout(float("nan")), "positive number of microseconds"),
    ],
)
def test_bad_requests_are_invalid_argument_naming_the_fault(
    change: Callable[[Request], object], fragment: str
) -> None:
    assert fragment in refused(_with(change))


def _parameter_on_request(request: Request) -> None:
    request.parameters["timeout"].string_param = "soon"


def test_a_string_timeout_is_refused() -> None:
    assert "microseconds" in refused(_with(_parameter_on_request))


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: contents_request(np.zeros((1, 784), np.uint8), "UINT8"), None),
        (lambda: contents_request(np.full((1, 784), 256, np.uint32), "UINT8"), "integers 0..255"),
        (lambda: fp32_tensor({}), "has no contents"),
        (
            lambda: fp32_tensor({"fp32_contents": [0.0] * 10}),
            "contents has 10 elements, its shape needs 784",
        ),
        (
            lambda: fp32_tensor({"int_contents": [0] * 784}),
            "carries its data in contents.fp32_contents, not int_contents",
        ),
    ],
)
def test_contents_rules(build: Callable[[], Request], fragment: str | None) -> None:
    request = build()
    if fragment is None:  # UINT8 zeros in uint_contents are fine
        pixels, _ = decode_infer_request(request, CONTRACT)
        assert not pixels.any()
    else:
        assert fragment in refused(request)


PROBABILITIES = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)
OUTPUTS = Outputs.of(PROBABILITIES)


@pytest.mark.parametrize("raw", [True, False])
def test_answers_come_in_the_form_asked_and_in_the_order_asked(raw: bool) -> None:
    options = InferOptions("r-9", ("label", "probabilities"), raw, None)
    response = encode_infer_response(OUTPUTS, options, CONTRACT, ["id-a", "id-b"])
    assert (response.model_name, response.model_version, response.id) == ("mnist", "3", "r-9")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("label", "INT64", [2]),
        ("probabilities", "FP32", [2, 2]),
    ]
    assert response.parameters["prediction_ids"].string_param == "id-a,id-b"
    if raw:
        assert len(response.raw_output_contents) == 2
        # The official client reads raw outputs: through its own message class and result type.
        result = InferResult(triton_pb.ModelInferResponse.FromString(response.SerializeToString()))
        assert result.as_numpy("label").tolist() == [1, 0]
        np.testing.assert_array_equal(result.as_numpy("probabilities"), PROBABILITIES)
    else:
        assert not response.raw_output_contents
        assert list(response.outputs[0].contents.int64_contents) == [1, 0]
        np.testing.assert_array_equal(
            np.array(response.outputs[1].contents.fp32_contents, np.float32).reshape(2, 2),
            PROBABILITIES,
        )


def test_no_ids_no_parameter() -> None:
    options = InferOptions("", ("label",), True, None)
    response = encode_infer_response(OUTPUTS, options, CONTRACT)
    assert "prediction_ids" not in response.parameters
    assert not response.id


@pytest.mark.parametrize(
    ("remaining_s", "timeout_us", "expected"),
    [
        (None, None, 1.0),  # the default
        (0.2, None, 0.2),  # the gRPC deadline
        (None, 300_000.0, 0.3),  # parameters["timeout"]
        (0.2, 300_000.0, 0.2),  # the shorter of both
        (0.5, 100_000.0, 0.1),
        (120.0, None, 30.0),  # capped like X-Request-Timeout-Ms
    ],
)
def test_timeout_rule(remaining_s: float | None, timeout_us: float | None, expected: float) -> None:
    options = InferOptions("", ("label",), True, timeout_us)
    assert timeout_s(options, remaining_s, 1.0, 30.0) == pytest.approx(expected)
