"""The OIP codec: Open Inference Protocol v2 infer bodies <-> pixels, with the binary tensor
data extension.

A request is a JSON header, optionally followed by raw tensor bytes: ``Inference-Header-Content-
Length`` says where the JSON ends and each input's ``parameters.binary_data_size`` how many bytes
it takes. The input arrives as FP32 in [0, 1] or UINT8 (divided by 255, like the v1 octet-stream
path), validated here so a bad request is refused with 400 before it is queued. The response puts
an output's data in JSON or, when asked (``binary_data`` per output, ``binary_data_output`` per
request), as raw little-endian bytes after the JSON header. Errors are OIP's ``{"error":
"<message>"}`` (OIP has no 415 or 422: both are 400).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from serving.batching import Outputs
from serving.pipeline.contract import Contract
from serving.pipeline.errors import MalformedBodyError, Status
from serving.pipeline.head import RequestHead
from serving.pipeline.pixels import Array, tensor_pixels

NAME = "v2"
LABEL_OUTPUT = "label"
JSON = b"application/json"
BINARY = b"application/octet-stream"
#: The most bytes a row of binary tensor data takes (FP32; UINT8 takes a quarter).
BYTES_PER_BINARY_PIXEL = 4
#: Most characters a JSON pixel takes: the same lower bound of the rows as v1's.
JSON_MAX_CHARS_PER_PIXEL = 24
#: OIP has no 415 or 422: a body it cannot use is a bad request.
_STATUS = {422: 400, 415: 400}
#: The input datatypes accepted for ``pixels`` and their (little-endian) NumPy element types.
INPUT_DATATYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
_UINT8 = INPUT_DATATYPES["UINT8"]
#: Parameters this service cannot honour; ignoring them would answer something else than asked.
_UNSUPPORTED = ("shared_memory_region", "classification")


class _Tensor(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = {}
    data: Any = None


class _FlatTensor(msgspec.Struct):
    """The common JSON case, decoded fully typed in C: flat numeric data."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = {}
    data: list[float] | None = None


class _Output(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = {}


class _Request(msgspec.Struct):
    inputs: list[_Tensor]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[_Output] | None = None


class _FlatRequest(msgspec.Struct):
    inputs: list[_FlatTensor]
    id: str | None = None
    parameters: dict[str, Any] = {}
    outputs: list[_Output] | None = None


_decode_flat = msgspec.json.Decoder(_FlatRequest).decode
_decode_any = msgspec.json.Decoder(_Request).decode
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request: its pixels ``(n, features)`` float32 and what the answer must hold."""

    pixels: Array
    id: str | None
    #: Requested outputs in order, each with whether its data goes binary.
    outputs: list[tuple[str, bool]]
    #: ``parameters.timeout`` (microseconds), in seconds, if given: the request's deadline.
    timeout_s: float | None


def expected_rows(head: RequestHead, features: int) -> int:
    """A lower bound of the rows of an infer body, from its headers alone: binary tensor data
    after ``Inference-Header-Content-Length`` bytes of JSON, else the JSON rule."""
    length = head.content_length
    if length is None:
        return 1
    header_length = head.header_length
    if header_length is None:
        return max(1, length // (features * JSON_MAX_CHARS_PER_PIXEL))
    if not header_length.isdigit():
        return 1
    return max(1, (length - int(header_length)) // (features * BYTES_PER_BINARY_PIXEL))


def decode(head: RequestHead, body: bytes, contract: Contract, limit: int) -> Request:
    """Undo a ``Content-Encoding``, then :func:`decode_infer`."""
    body = decompress(body, head.content_encoding, limit)
    return decode_infer(body, head.header_length, contract)


def decompress(body: bytes, encoding: bytes | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate``; never inflates past ``limit`` bytes."""
    if encoding is None or encoding in (b"identity", b""):
        return body
    kind = encoding.decode("latin-1").strip().lower()
    if kind == "gzip":
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif kind == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise MalformedBodyError(f"unsupported Content-Encoding {kind!r}: use gzip or deflate")
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedBodyError(f"body is not valid {kind} data: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise MalformedBodyError(f"decompressed body is larger than {limit} bytes")
    if not inflater.eof:
        raise MalformedBodyError(f"body is truncated {kind} data")
    return data


def split_body(body: bytes, header_length: bytes | None) -> tuple[bytes, memoryview]:
    """``(JSON header, binary tail)`` per ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit():
        raise MalformedBodyError("Inference-Header-Content-Length must be a non-negative integer")
    size = int(header_length)
    if size > len(body):
        raise MalformedBodyError(
            f"Inference-Header-Content-Length {size} is past the end of the {len(body)}-byte body"
        )
    view = memoryview(body)
    return bytes(view[:size]), view[size:]


def decode_infer(body: bytes, header_length: bytes | None, contract: Contract) -> Request:
    """Parse and validate an infer request; raises 400 ``MalformedBodyError`` naming the fault."""
    header, binary = split_body(body, header_length)
    request: _Request | _FlatRequest
    try:
        request = _decode_flat(header)
    except msgspec.ValidationError:
        try:
            request = _decode_any(header)
        except msgspec.ValidationError as exc:
            raise MalformedBodyError(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"inference request is not valid JSON: {exc}") from None
    if len(request.inputs) != 1:
        names = [tensor.name for tensor in request.inputs]
        raise MalformedBodyError(f"expected exactly one input {contract.input_name!r}, got {names}")
    pixels, used = _input_pixels(request.inputs[0], binary, contract)
    if used != len(binary):
        raise MalformedBodyError(
            f"body holds {len(binary)} bytes of binary tensor data, inputs declare {used}"
        )
    timeout_us = _timeout_us(request.parameters)
    return Request(
        pixels=pixels,
        id=request.id,
        outputs=_requested_outputs(request, contract),
        timeout_s=None if timeout_us is None else timeout_us / 1e6,
    )


def _input_pixels(
    tensor: _Tensor | _FlatTensor, binary: memoryview, contract: Contract
) -> tuple[Array, int]:
    """The validated ``(n, features)`` float32 pixels and how many binary bytes they used."""
    if tensor.name != contract.input_name:
        raise MalformedBodyError(
            f"unknown input {tensor.name!r}: this model takes {contract.input_name!r}"
        )
    dtype = INPUT_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise MalformedBodyError(
            f"input {tensor.name!r} has datatype {tensor.datatype!r}; send FP32 in [0, 1] or "
            "UINT8 pixels"
        )
    _refuse_unsupported(tensor.parameters, f"input {tensor.name!r}")
    shape, features = tensor.shape, contract.features
    if len(shape) != 2 or shape[1] != features or shape[0] < 1:
        raise MalformedBodyError(
            f"input {tensor.name!r} has shape {shape}; expected [n, {features}] with n >= 1"
        )
    rows = shape[0]
    if rows > contract.max_instances:
        raise MalformedBodyError(
            f"a request holds 1 to {contract.max_instances} instances; got {rows}"
        )
    count = rows * features
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if tensor.data is not None:
            raise MalformedBodyError(
                f"input {tensor.name!r} has both JSON data and binary_data_size"
            )
        values, used = _binary_values(tensor.name, size, binary, dtype, count)
    else:
        if tensor.data is None:
            raise MalformedBodyError(f"input {tensor.name!r} has no data and no binary_data_size")
        if isinstance(tensor, _FlatTensor) and dtype is not _UINT8:  # msgspec typed them as floats
            values, used = np.array(tensor.data, dtype=np.float32), 0
            if values.size != count:
                raise MalformedBodyError(
                    f"input {tensor.name!r}: data has {values.size} elements, its shape needs "
                    f"{count}"
                )
        else:
            values, used = _json_values(tensor.name, tensor.data, dtype, count), 0
    return tensor_pixels(tensor.name, values.reshape(rows, features), MalformedBodyError), used


def _binary_values(
    name: str, size: object, binary: memoryview, dtype: np.dtype[Any], count: int
) -> tuple[npt.NDArray[Any], int]:
    expected = count * dtype.itemsize
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise MalformedBodyError(f"input {name!r}: binary_data_size must be a non-negative integer")
    if size != expected:
        raise MalformedBodyError(
            f"input {name!r}: binary_data_size {size} does not match its shape and datatype "
            f"({expected} bytes)"
        )
    if size > len(binary):
        raise MalformedBodyError(
            f"input {name!r}: binary_data_size {size} is past the end of the body "
            f"({len(binary)} binary bytes)"
        )
    return np.frombuffer(binary[:size], dtype=dtype), size


def _json_values(name: str, data: object, dtype: np.dtype[Any], count: int) -> npt.NDArray[Any]:
    try:
        values = np.asarray(data)
    except ValueError:  # ragged nesting
        raise MalformedBodyError(
            f"input {name!r}: data is ragged (rows of different length)"
        ) from None
    if values.dtype.kind not in "iuf":
        raise MalformedBodyError(f"input {name!r}: every data element must be a number")
    if values.size != count:
        raise MalformedBodyError(
            f"input {name!r}: data has {values.size} elements, its shape needs {count}"
        )
    if dtype is _UINT8:
        if values.dtype.kind == "f" and not np.array_equal(values, np.floor(values)):
            raise MalformedBodyError(f"input {name!r}: UINT8 data must be integers 0..255")
        if values.min() < 0 or values.max() > 255:
            raise MalformedBodyError(f"input {name!r}: UINT8 data must be integers 0..255")
        return values.astype(np.uint8).ravel()
    return values.astype(np.float32).ravel()


def _refuse_unsupported(parameters: dict[str, Any], what: str) -> None:
    for key in _UNSUPPORTED:
        if key in parameters:
            raise MalformedBodyError(f"{what}: parameter {key!r} is not supported")


def _requested_outputs(
    request: _Request | _FlatRequest, contract: Contract
) -> list[tuple[str, bool]]:
    default_binary = _flag(request.parameters, "binary_data_output", "request")
    known = (contract.output_name, LABEL_OUTPUT)
    if request.outputs is None:
        return [(name, default_binary) for name in known]
    outputs: list[tuple[str, bool]] = []
    for output in request.outputs:
        if output.name not in known:
            raise MalformedBodyError(
                f"unknown output {output.name!r}: this model has {list(known)}"
            )
        _refuse_unsupported(output.parameters, f"output {output.name!r}")
        binary = output.parameters.get("binary_data")
        outputs.append(
            (
                output.name,
                default_binary
                if binary is None
                else _flag(output.parameters, "binary_data", output.name),
            )
        )
    return outputs


def _flag(parameters: dict[str, Any], key: str, owner: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise MalformedBodyError(f"{owner}: parameter {key!r} must be true or false")
    return value


def _timeout_us(parameters: dict[str, Any]) -> float | None:
    value = parameters.get("timeout")
    if value is None:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise MalformedBodyError("parameter 'timeout' must be a positive number of microseconds")
    return float(value)


# ---------------------------------------------------------------------- response
class _OutTensor(msgspec.Struct, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None
    parameters: dict[str, int] | None = None


class _Response(msgspec.Struct, omit_defaults=True):
    model_name: str
    model_version: str
    outputs: list[_OutTensor]
    id: str | None = None
    #: ``prediction_ids`` (row order): what POST /v1/feedback joins true labels to.
    parameters: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class Encoded:
    body: bytes
    #: Length of the JSON header when binary data follows it, else None.
    header_length: int | None


def encode(
    outputs: Outputs, request: Request, contract: Contract, prediction_ids: list[str] | None
) -> Encoded:
    """The response body: JSON header, then the binary outputs in the order requested."""
    rows = outputs.rows
    tensors: list[_OutTensor] = []
    chunks: list[bytes] = []
    for name, binary in request.outputs:
        if name == contract.output_name:
            array: npt.NDArray[Any] = outputs.probabilities.astype("<f4", copy=False)
            datatype, shape = "FP32", [rows, contract.classes]
        else:
            array = outputs.labels.astype("<i8")
            datatype, shape = "INT64", [rows]
        if binary:
            raw = array.tobytes()
            chunks.append(raw)
            tensors.append(
                _OutTensor(name, datatype, shape, parameters={"binary_data_size": len(raw)})
            )
        else:
            tensors.append(_OutTensor(name, datatype, shape, data=array.ravel().tolist()))
    parameters: dict[str, object] | None = (
        {"prediction_ids": prediction_ids} if prediction_ids is not None else None
    )
    header = _encoder.encode(
        _Response(contract.model_name, contract.model_version, tensors, request.id, parameters)
    )
    if not chunks:
        return Encoded(header, None)
    return Encoded(b"".join([header, *chunks]), len(header))


class OipError(msgspec.Struct):
    """The Open Inference Protocol's error body: clients (tritonclient among them) read
    ``error`` as a string."""

    error: str


def error(status: Status) -> tuple[int, bytes]:
    """The status and body an OIP client gets."""
    return _STATUS.get(status.code, status.code), _encoder.encode(OipError(status.message))


PREFIX = "/v2"


def is_oip_path(path: str) -> bool:
    """True for the OIP paths: their errors (404, 405, 413 from the router too) take the OIP
    shape."""
    return path == PREFIX or path.startswith(PREFIX + "/")
