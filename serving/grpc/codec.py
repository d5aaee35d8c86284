"""Open Inference Protocol gRPC infer messages <-> arrays.

``decode_infer_request`` turns a ``ModelInferRequest`` into validated model input and the options
its answer needs; ``encode_infer_response`` turns the model's probabilities (and their labels)
into a ``ModelInferResponse``. No I/O, no service: the request pipeline calls them as the gRPC
codec, beside the HTTP ones.

The rules are those of the HTTP OIP codec (serving/pipeline/oip.py), with the same messages,
checked against the same contract (serving/pipeline/contract.py): one input, shape
``[n, features]`` with 1 <= n <= ``max_instances``; FP32 in [0, 1] or UINT8 (divided by 255,
serving/pipeline/pixels.py); outputs the model's probabilities (FP32 ``[n, classes]``) and
``label`` (INT64 ``[n]``), both unless some are requested; ``shared_memory_region`` and
``classification`` are refused rather than ignored; ``parameters["timeout"]`` (microseconds) is
honoured. gRPC-specific:

* the data comes in ``raw_input_contents`` (one little-endian entry per input: what tritonclient
  sends) or in the typed ``contents`` field that matches the datatype (``fp32_contents`` for
  FP32, ``uint_contents`` for UINT8), never both;
* the answer uses ``raw_output_contents`` when the request used raw input, else ``contents``
  (``fp32_contents``, ``int64_contents``): a client answers in the form it asked in;
* the feedback ids (one per row, what ``POST /v1/feedback`` joins labels to) travel as one
  ``parameters["prediction_ids"]`` string, comma-separated: ``InferParameter`` has no list, and
  an id (base64url) never holds a comma.

Every refusal is a :class:`~serving.grpc.errors.StatusError` with ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.batching import Outputs
from serving.grpc.errors import invalid
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.pipeline.contract import Contract
from serving.pipeline.pixels import Array, tensor_pixels

LABEL_OUTPUT = "label"
PREDICTION_IDS = "prediction_ids"
#: Accepted input datatypes: their little-endian element type and their ``contents`` field.
INPUT_DATATYPES: dict[str, tuple[np.dtype[Any], str]] = {
    "FP32": (np.dtype("<f4"), "fp32_contents"),
    "UINT8": (np.dtype("u1"), "uint_contents"),
}
#: Parameters this service cannot honour; ignoring them would answer something else than asked.
_UNSUPPORTED = ("shared_memory_region", "classification")
_NUMBER_KINDS = ("int64_param", "uint64_param", "double_param")


@dataclass(frozen=True, slots=True)
class InferOptions:
    """What the answer to a decoded request must hold."""

    #: The request's ``id``, echoed ("" when none).
    id: str
    #: Output names in the order requested (every output when none was).
    outputs: tuple[str, ...]
    #: Answer in ``raw_output_contents`` (the request used ``raw_input_contents``).
    raw: bool
    #: ``parameters["timeout"]`` in microseconds, if given.
    timeout_us: float | None

    @property
    def pixels_timeout_s(self) -> float | None:
        """``parameters["timeout"]`` in seconds (None: not given)."""
        return None if self.timeout_us is None else self.timeout_us / 1e6


def decode_infer_request(
    request: pb.ModelInferRequest, contract: Contract
) -> tuple[Array, InferOptions]:
    """The request's pixels ``(n, features)`` float32 and its options; raises ``StatusError``
    (``INVALID_ARGUMENT``) naming the fault. The model name and version are not looked at:
    they choose the model, which the caller did to get ``contract``."""
    if len(request.inputs) != 1:
        names = [tensor.name for tensor in request.inputs]
        raise invalid(f"expected exactly one input {contract.input_name!r}, got {names}")
    tensor = request.inputs[0]
    name = tensor.name
    if name != contract.input_name:
        raise invalid(f"unknown input {name!r}: this model takes {contract.input_name!r}")
    accepted = INPUT_DATATYPES.get(tensor.datatype)
    if accepted is None:
        raise invalid(
            f"input {name!r} has datatype {tensor.datatype!r}; send FP32 in [0, 1] or UINT8 pixels"
        )
    _refuse_unsupported(tensor.parameters, f"input {name!r}")
    shape, features = list(tensor.shape), contract.features
    if len(shape) != 2 or shape[1] != features or shape[0] < 1:
        raise invalid(f"input {name!r} has shape {shape}; expected [n, {features}] with n >= 1")
    rows = shape[0]
    if rows > contract.max_instances:
        raise invalid(f"a request holds 1 to {contract.max_instances} instances; got {rows}")
    dtype, field = accepted
    raw = len(request.raw_input_contents) > 0
    if raw:
        values = _raw_values(request, tensor, dtype, rows * features)
    else:
        values = _contents_values(tensor, dtype, field, rows * features)
    pixels = tensor_pixels(name, values.reshape(rows, features), invalid)
    options = InferOptions(
        id=request.id,
        outputs=_requested_outputs(request, contract),
        raw=raw,
        timeout_us=_timeout_us(request.parameters),
    )
    return pixels, options


def _raw_values(
    request: pb.ModelInferRequest,
    tensor: pb.ModelInferRequest.InferInputTensor,
    dtype: np.dtype[Any],
    count: int,
) -> npt.NDArray[Any]:
    entries = len(request.raw_input_contents)
    if entries != len(request.inputs):
        raise invalid(f"raw_input_contents has {entries} entries for {len(request.inputs)} input")
    if tensor.HasField("contents"):
        raise invalid(f"input {tensor.name!r} has both contents and raw_input_contents")
    data = request.raw_input_contents[0]
    expected = count * dtype.itemsize
    if len(data) != expected:
        raise invalid(
            f"input {tensor.name!r}: raw_input_contents holds {len(data)} bytes, its shape and "
            f"datatype need {expected}"
        )
    return np.frombuffer(data, dtype=dtype)


def _contents_values(
    tensor: pb.ModelInferRequest.InferInputTensor, dtype: np.dtype[Any], field: str, count: int
) -> npt.NDArray[Any]:
    name = tensor.name
    others = [f.name for f, _ in tensor.contents.ListFields() if f.name != field]
    if others:
        raise invalid(
            f"input {name!r} ({tensor.datatype}) carries its data in contents.{field}, "
            f"not {', '.join(others)}"
        )
    data: Sequence[float] = getattr(tensor.contents, field)
    if not data:
        raise invalid(f"input {name!r} has no contents and the request no raw_input_contents")
    if len(data) != count:
        raise invalid(f"input {name!r}: contents has {len(data)} elements, its shape needs {count}")
    if dtype.kind == "u":  # uint_contents is uint32: check the range before narrowing
        wide = np.fromiter(data, dtype=np.uint32, count=count)
        if int(wide.max()) > 255:
            raise invalid(f"input {name!r}: UINT8 data must be integers 0..255")
        return wide.astype(np.uint8)
    return np.fromiter(data, dtype=np.float32, count=count)


def _refuse_unsupported(parameters: Mapping[str, pb.InferParameter], what: str) -> None:
    for key in _UNSUPPORTED:
        if key in parameters:
            raise invalid(f"{what}: parameter {key!r} is not supported")


def _requested_outputs(request: pb.ModelInferRequest, contract: Contract) -> tuple[str, ...]:
    known = (contract.output_name, LABEL_OUTPUT)
    if not request.outputs:
        return known
    for output in request.outputs:
        if output.name not in known:
            raise invalid(f"unknown output {output.name!r}: this model has {list(known)}")
        _refuse_unsupported(output.parameters, f"output {output.name!r}")
    return tuple(output.name for output in request.outputs)


def _timeout_us(parameters: Mapping[str, pb.InferParameter]) -> float | None:
    if "timeout" not in parameters:  # reading a missing key of a message map would insert it
        return None
    parameter = parameters["timeout"]
    kind = parameter.WhichOneof("parameter_choice") or ""
    value = float(getattr(parameter, kind)) if kind in _NUMBER_KINDS else math.nan
    if not math.isfinite(value) or value <= 0:
        raise invalid("parameter 'timeout' must be a positive number of microseconds")
    return value


def timeout_s(
    options: InferOptions, remaining_s: float | None, default_s: float, max_s: float
) -> float:
    """How long the request may take from its arrival: the call's gRPC deadline
    (``remaining_s``, None when the client set none) and ``parameters["timeout"]``, the
    shorter of the two, else ``default_s``; never more than ``max_s`` (like HTTP's
    X-Request-Timeout-Ms and ``parameters.timeout``)."""
    limits = [limit for limit in (remaining_s, _seconds(options.timeout_us)) if limit is not None]
    return min(min(limits) if limits else default_s, max_s)


def _seconds(microseconds: float | None) -> float | None:
    return None if microseconds is None else microseconds / 1e6


def encode_infer_response(
    outputs: Outputs,
    options: InferOptions,
    contract: Contract,
    prediction_ids: Sequence[str] | None = None,
) -> pb.ModelInferResponse:
    """The response for the batch's ``outputs`` (probabilities ``(n, classes)`` and labels
    ``(n,)``): the outputs ``options`` asks for, in its order and form."""
    probabilities, labels = outputs.probabilities, outputs.labels
    output_name = contract.output_name
    rows = int(probabilities.shape[0])
    response = pb.ModelInferResponse(
        model_name=contract.model_name, model_version=contract.model_version, id=options.id
    )
    for name in options.outputs:
        if name == output_name:
            tensor = response.outputs.add(
                name=name, datatype="FP32", shape=[rows, int(probabilities.shape[1])]
            )
            floats = probabilities.astype("<f4", copy=False)
            if options.raw:
                response.raw_output_contents.append(floats.tobytes())
            else:
                tensor.contents.fp32_contents.extend(floats.ravel().tolist())
        else:
            tensor = response.outputs.add(name=name, datatype="INT64", shape=[rows])
            integers = labels.astype("<i8", copy=False)
            if options.raw:
                response.raw_output_contents.append(integers.tobytes())
            else:
                tensor.contents.int64_contents.extend(integers.tolist())
    if prediction_ids:
        response.parameters[PREDICTION_IDS].string_param = ",".join(prediction_ids)
    return response
