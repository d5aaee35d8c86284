"""Open Inference Protocol v2 request bodies for the load test and the benchmark, and the check
a v2 response must pass.

Two encodings of the same digits: JSON (FP32 ``pixel / 255`` in ``data``, outputs in JSON) and
the binary tensor extension (FP32 bytes after the JSON header, outputs asked back in binary, the
official client's default). Both ask for ``probabilities`` and ``label``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt

from loadtest.data import JSON_DECIMALS, PIXELS, Sample, decode_binary_body
from loadtest.schema import NUM_CLASSES, SchemaError

INFER_PATH = "/v2/models/mnist/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"


def _request(rows: int, binary: bool, data: list[float] | None) -> bytes:
    tensor: dict[str, object] = {"name": "pixels", "shape": [rows, PIXELS], "datatype": "FP32"}
    if data is None:
        tensor["parameters"] = {"binary_data_size": rows * PIXELS * 4}
    else:
        tensor["data"] = data
    outputs = [
        {"name": name, "parameters": {"binary_data": binary}} for name in ("probabilities", "label")
    ]
    return msgspec.json.encode({"inputs": [tensor], "outputs": outputs})


def v2_json_body(pixels: npt.NDArray[np.uint8]) -> bytes:
    """An infer request with the pixels as JSON FP32 data, answered in JSON."""
    flat = pixels.reshape(-1, PIXELS)
    scaled = np.round(flat.astype(np.float64) / 255.0, JSON_DECIMALS)
    return _request(len(flat), False, scaled.ravel().tolist())


def v2_binary_body(pixels: npt.NDArray[np.uint8]) -> tuple[bytes, int]:
    """``(body, JSON header length)``: FP32 binary tensor data, outputs asked back in binary."""
    flat = pixels.reshape(-1, PIXELS)
    header = _request(len(flat), True, None)
    data = (flat.astype(np.float32) / np.float32(255)).astype("<f4").tobytes()
    return header + data, len(header)


@dataclass(frozen=True, slots=True)
class V2Sample:
    """One prepared v2 request: both encodings of the same digits and their true labels."""

    json: bytes
    binary: bytes
    header_length: int
    labels: tuple[int, ...]


def v2_samples(samples: list[Sample]) -> list[V2Sample]:
    """The v2 twins of prepared v1 samples (same digits, same labels)."""
    twins = []
    for sample in samples:
        pixels = decode_binary_body(sample.binary)
        binary, header_length = v2_binary_body(pixels)
        twins.append(V2Sample(v2_json_body(pixels), binary, header_length, sample.labels))
    return twins


class _Parameters(msgspec.Struct):
    binary_data_size: int


class _Output(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: _Parameters | None = None


class _Response(msgspec.Struct):
    model_name: str
    model_version: str
    outputs: Annotated[list[_Output], msgspec.Meta(min_length=2, max_length=2)]


_decoder = msgspec.json.Decoder(_Response)


def check_v2_response(body: bytes, header_length: str | None, expected_count: int) -> list[int]:
    """Validate a 200 infer response for ``expected_count`` digits; return the labels."""
    size = int(header_length) if header_length else len(body)
    try:
        response = _decoder.decode(body[:size])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SchemaError(f"schema: {exc}") from exc
    offset = size
    values: dict[str, npt.NDArray[np.float64]] = {}
    for output in response.outputs:
        if output.parameters is not None:
            dtype = "<f4" if output.datatype == "FP32" else "<i8"
            end = offset + output.parameters.binary_data_size
            values[output.name] = np.frombuffer(body[offset:end], dtype=dtype).astype(np.float64)
            offset = end
        elif output.data is not None:
            values[output.name] = np.asarray(output.data, dtype=np.float64)
        else:
            raise SchemaError(f"output {output.name!r} has neither data nor binary_data_size")
    probabilities, labels = values.get("probabilities"), values.get("label")
    if probabilities is None or labels is None:
        raise SchemaError(f"outputs {sorted(values)}: expected probabilities and label")
    if probabilities.size != expected_count * NUM_CLASSES or labels.size != expected_count:
        raise SchemaError(f"outputs do not hold {expected_count} predictions")
    if not np.array_equal(probabilities.reshape(-1, NUM_CLASSES).argmax(axis=1), labels):
        raise SchemaError("label is not the most probable class")
    return [int(label) for label in labels]
