"""The v1 codec: ``POST /v1/predict`` bodies <-> pixels, predictions -> JSON.

Three encodings: JSON (flat instances on the fast path, square nested rows as fallback), raw
uint8 bytes (``application/octet-stream``, cheapest) and one PNG image. Validation happens
before anything is queued; a failure names the instance index and the problem (422), so a bad
request never reaches a batch. Errors leave as ``{"error": {"status", "message",
"request_id"}}``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.batching import Outputs
from serving.pipeline.contract import Contract
from serving.pipeline.errors import (
    ApiError,
    InvalidInputError,
    MalformedBodyError,
    Status,
    UnsupportedMediaTypeError,
)
from serving.pipeline.head import RequestHead
from serving.pipeline.pixels import Array, first_bad_pixel, from_uint8

logger = logging.getLogger(__name__)

NAME = "v1"
JSON = b"application/json"
#: Most characters a JSON pixel takes (``0.12345678901234567,``): a body of N bytes holds at
#: least N / (features x this) rows, so admission's estimate never refuses a request that fits.
JSON_MAX_CHARS_PER_PIXEL = 24
#: Deepest JSON nesting the slow path decodes (a valid body nests 4 deep: object, instances,
#: rows, pixels); deeper input would exhaust the decoder's recursion (RecursionError).
MAX_JSON_DEPTH = 32
#: Longest number token (characters) the slow path decodes; a 400-digit integer cannot become a
#: float (OverflowError) and no pixel needs more than a few dozen characters.
MAX_NUMBER_CHARS = 64
_LONG_NUMBER = re.compile(rb"[-+0-9.eE]{%d,}" % (MAX_NUMBER_CHARS + 1))
_OPENERS = np.zeros(256, dtype=np.int8)
_OPENERS[[ord("["), ord("{")]] = 1
_OPENERS[[ord("]"), ord("}")]] = -1

#: A pixel as the typed decoders accept it: msgspec checks the range in C while parsing, so the
#: fast path needs no NumPy pass (JSON has no NaN/Infinity literals; 1e999 fails ``le``).
Pixel = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class _Flat(msgspec.Struct):
    instances: list[list[Pixel]]


class _Nested(msgspec.Struct):
    instances: list[list[list[Pixel]]]


class _Any(msgspec.Struct):
    instances: list[Any]


class Prediction(msgspec.Struct):
    label: int
    confidence: float
    probabilities: list[float]
    #: Send it back with the true label to POST /v1/feedback.
    prediction_id: str


class ModelRef(msgspec.Struct):
    name: str
    version: str


class PredictResponse(msgspec.Struct):
    predictions: list[Prediction]
    model: ModelRef


class ErrorDetail(msgspec.Struct):
    status: int
    message: str
    request_id: str | None


class ErrorBody(msgspec.Struct):
    """Every v1 error (and every error outside ``/v2``): one shape for clients to parse."""

    error: ErrorDetail


_flat = msgspec.json.Decoder(_Flat)
_nested = msgspec.json.Decoder(_Nested)
_generic = msgspec.json.Decoder(_Any)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded ``/v1/predict`` body: only its pixels matter."""

    pixels: Array
    #: v1 deadlines come from the X-Request-Timeout-Ms header, never from the body.
    timeout_s: float | None = None


def media_type(content_type: bytes) -> bytes:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return content_type.partition(b";")[0].strip().lower()


def expected_rows(head: RequestHead, features: int) -> int:
    """A lower bound of the rows a body holds, from its headers alone (1 when unknown)."""
    length = head.content_length
    if length is None:
        return 1
    kind = media_type(head.content_type)
    if kind == b"application/octet-stream":
        return max(1, -(-length // features))
    if kind == b"application/json":
        return max(1, length // (features * JSON_MAX_CHARS_PER_PIXEL))
    return 1  # image/png is one image; anything else is refused (415) when decoded


def decode(head: RequestHead, body: bytes, contract: Contract) -> Request:
    """Dispatch on the media type; raises 400/415/422 API errors and nothing else.

    Whatever a decoder raises beyond its own API errors is the client's bytes meeting a parser
    corner (Pillow, msgspec, NumPy): it is answered 400, never 500.
    """
    try:
        return Request(_decode(media_type(head.content_type), body, contract))
    except ApiError:
        raise
    except Exception as exc:  # client bytes must never produce a 500
        logger.warning("undiagnosed malformed body (%s): %s", type(exc).__name__, exc)
        raise MalformedBodyError(f"malformed body ({type(exc).__name__})") from None


def _decode(kind: bytes, body: bytes, contract: Contract) -> Array:
    if kind == b"application/json":
        return decode_json(body, contract)
    if kind == b"application/octet-stream":
        return decode_raw(body, contract)
    if kind == b"image/png":
        return decode_png(body, contract)
    shown = kind.decode("latin-1") or "(none)"
    raise UnsupportedMediaTypeError(
        f"unsupported content type {shown!r}: send application/json, application/octet-stream "
        f"(N x {contract.features} uint8) or image/png ({_square(contract)})"
    )


def decode_json(body: bytes, contract: Contract) -> Array:
    try:
        instances: list[Any] = _flat.decode(body).instances
    except msgspec.ValidationError:
        try:
            instances = _nested.decode(body).instances
        except msgspec.ValidationError:
            _diagnose(body, contract)
            raise  # pragma: no cover  (_diagnose always raises)
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"malformed JSON body: {exc}") from None
    _check_count(len(instances), contract)
    try:
        pixels = np.array(instances, dtype=np.float32)  # every value is in [0, 1] already
    except ValueError:  # ragged instances
        _diagnose(body, contract)
        raise  # pragma: no cover
    features, side = contract.features, contract.side
    if pixels.ndim == 3:
        if side is None or pixels.shape[1:] != (side, side):
            raise InvalidInputError(
                f"instance 0: expected {_rows_of(contract)}, got shape {list(pixels.shape[1:])}",
                reason="wrong_size",
            )
        pixels = pixels.reshape(-1, features)
    elif pixels.shape[1] != features:
        raise InvalidInputError(
            f"instance 0: expected {_numbers_of(contract)}, got {pixels.shape[1]}",
            reason="wrong_size",
        )
    return pixels


def decode_raw(body: bytes, contract: Contract) -> Array:
    features = contract.features
    if not body or len(body) % features:
        raise InvalidInputError(
            f"octet-stream body must be N x {features} uint8 pixels (N >= 1); got "
            f"{len(body)} bytes",
            reason="wrong_size",
        )
    rows = len(body) // features
    _check_count(rows, contract)
    return from_uint8(np.frombuffer(body, dtype=np.uint8).reshape(rows, features))


def decode_png(body: bytes, contract: Contract) -> Array:
    side = contract.side
    try:
        image = Image.open(io.BytesIO(body), formats=["PNG"])
        if side is None or image.size != (side, side):
            raise InvalidInputError(
                f"instance 0: PNG must be {_square(contract)} pixels, got "
                f"{image.size[0]}x{image.size[1]}",
                reason="wrong_size",
            )
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise MalformedBodyError("body is not a readable PNG image: not a PNG file") from None
    except ApiError:
        raise
    except Exception:  # OSError, SyntaxError, DecompressionBombError, ...
        # Pillow's messages name its internals (object reprs); say what the client can fix.
        raise MalformedBodyError(
            "body is not a readable PNG image: its data is damaged or truncated"
        ) from None
    return from_uint8(gray.reshape(1, contract.features))


def encode(outputs: Outputs, model: ModelRef, ids: list[str]) -> bytes:
    """``{"predictions": [...], "model": {...}}`` in instance order."""
    predictions = [
        Prediction(label, confidence, row, prediction_id)
        for label, confidence, row, prediction_id in zip(
            outputs.labels.tolist(),
            outputs.confidences.tolist(),
            outputs.probabilities.tolist(),
            ids,
            strict=True,
        )
    ]
    return _encoder.encode(PredictResponse(predictions, model))


def error(status: Status, request_id: str) -> bytes:
    """The v1 error body."""
    return _encoder.encode(ErrorBody(ErrorDetail(status.code, status.message, request_id)))


# ---------------------------------------------------------------------- diagnosis
def _square(contract: Contract) -> str:
    return f"{contract.side}x{contract.side}" if contract.side else "square"


def _numbers_of(contract: Contract) -> str:
    nested = f" (or {contract.side} rows of {contract.side})" if contract.side else ""
    return f"{contract.features} numbers{nested}"


def _rows_of(contract: Contract) -> str:
    return f"{contract.side} rows of {contract.side} numbers"


def _check_count(count: int, contract: Contract) -> None:
    if not 1 <= count <= contract.max_instances:
        raise InvalidInputError(
            f"a request holds 1 to {contract.max_instances} instances; got {count}",
            reason="instance_count",
        )


def check_json_bounds(body: bytes) -> None:
    """Refuse (400) nesting deeper than ``MAX_JSON_DEPTH`` and numbers longer than
    ``MAX_NUMBER_CHARS`` before an untyped decode; vectorised, so it costs microseconds.

    Brackets inside strings count too: that over-estimates depth only for bodies that carry
    strings, which a valid request never needs.
    """
    depth = np.cumsum(_OPENERS[np.frombuffer(body, dtype=np.uint8)], dtype=np.int64)
    if depth.size and int(depth.max()) > MAX_JSON_DEPTH:
        raise MalformedBodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if _LONG_NUMBER.search(body):
        raise MalformedBodyError(f"a JSON number is longer than {MAX_NUMBER_CHARS} characters")


def _diagnose(body: bytes, contract: Contract) -> None:
    """Slow path for bodies that fit neither typed shape: find and name the first bad instance."""
    check_json_bounds(body)
    try:
        instances = _generic.decode(body).instances
    except msgspec.ValidationError as exc:
        # msgspec refuses a number that overflows a float (1e999): JSON's only non-finite value.
        overflow = str(exc).startswith("Number out of range")
        raise InvalidInputError(
            f"invalid request body: {exc}", reason="non_finite" if overflow else "invalid"
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"malformed JSON body: {exc}") from None
    _check_count(len(instances), contract)
    for index, instance in enumerate(instances):
        problem = _instance_problem(instance, contract)
        if problem:
            reason, text = problem
            raise InvalidInputError(f"instance {index}: {text}", reason=reason)
    with contextlib.suppress(ValueError):  # ValueError: mixed layouts, reported below
        # Every instance is well-shaped: the problem is a value (named with its index).
        flat = np.array(instances, dtype=np.float64).reshape(len(instances), contract.features)
        bad = first_bad_pixel(flat)
        if bad is not None:
            raise InvalidInputError(
                f"instance {bad.row}: value {bad.value!r} at pixel {bad.pixel} {bad.problem} "
                "(send pixel values divided by 255)",
                reason="out_of_range" if bad.finite else "non_finite",
            )
    raise InvalidInputError(
        f"instances mix flat ({contract.features}) and nested ({_square(contract)}) layouts; "
        "use one",
        reason="wrong_size",
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _instance_problem(instance: object, contract: Contract) -> tuple[str, str] | None:
    """``(reason, message)`` of the first problem of one instance, None if it is well-formed."""
    if not isinstance(instance, list):
        return "wrong_type", f"expected a list of numbers, got {type(instance).__name__}"
    side = contract.side
    if instance and isinstance(instance[0], list):
        if (
            side is None
            or len(instance) != side
            or any(not isinstance(row, list) or len(row) != side for row in instance)
        ):
            return "wrong_size", f"expected {_rows_of(contract)}"
        if not all(_is_number(v) for row in instance for v in row):
            return "wrong_type", "every pixel must be a number"
        return None
    if len(instance) != contract.features:
        return "wrong_size", f"expected {_numbers_of(contract)}, got {len(instance)}"
    if not all(_is_number(v) for v in instance):
        return "wrong_type", "every pixel must be a number"
    return None
