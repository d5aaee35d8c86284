"""Request body -> validated float32 array ``(n, 784)``, before anything is queued.

Three encodings: JSON (flat 784-number instances on the fast path, 28x28 nested as fallback),
raw uint8 bytes (``application/octet-stream``, cheapest) and one PNG image. Validation is
vectorised with NumPy; on failure the message names the instance index and the problem, so a bad
request is refused with 422 here and never reaches a batch.
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
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from serving.api.errors import (
    ApiError,
    InvalidInputError,
    MalformedBodyError,
    UnsupportedMediaTypeError,
)

logger = logging.getLogger(__name__)

Array = npt.NDArray[np.float32]
HEIGHT = WIDTH = 28
FEATURES = HEIGHT * WIDTH
_SCALE = np.float32(255.0)

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


_flat = msgspec.json.Decoder(_Flat)
_nested = msgspec.json.Decoder(_Nested)
_generic = msgspec.json.Decoder(_Any)


@dataclass(frozen=True, slots=True)
class Limits:
    max_instances: int


def media_type(content_type: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return content_type.partition(";")[0].strip().lower()


def decode(content_type: str, body: bytes, limits: Limits) -> Array:
    """Dispatch on the media type; raises 400/415/422 API errors and nothing else.

    Whatever a decoder raises beyond its own API errors is the client's bytes meeting a parser
    corner (Pillow, msgspec, NumPy): it is answered 400, never 500.
    """
    try:
        return _decode(content_type, body, limits)
    except ApiError:
        raise
    except Exception as exc:  # client bytes must never produce a 500
        logger.warning("undiagnosed malformed body (%s): %s", type(exc).__name__, exc)
        raise MalformedBodyError(f"malformed body ({type(exc).__name__})") from None


def _decode(content_type: str, body: bytes, limits: Limits) -> Array:
    kind = media_type(content_type)
    if kind == "application/json":
        return decode_json(body, limits)
    if kind == "application/octet-stream":
        return decode_raw(body, limits)
    if kind == "image/png":
        return decode_png(body)
    raise UnsupportedMediaTypeError(
        f"unsupported content type {kind or '(none)'!r}: send application/json, "
        "application/octet-stream (N x 784 uint8) or image/png (28x28)"
    )


def decode_json(body: bytes, limits: Limits) -> Array:
    try:
        instances: list[Any] = _flat.decode(body).instances
    except msgspec.ValidationError:
        try:
            instances = _nested.decode(body).instances
        except msgspec.ValidationError:
            _diagnose(body, limits)
            raise  # pragma: no cover  (_diagnose always raises)
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"malformed JSON body: {exc}") from None
    _check_count(len(instances), limits)
    try:
        pixels = np.array(instances, dtype=np.float32)  # every value is in [0, 1] already
    except ValueError:  # ragged instances
        _diagnose(body, limits)
        raise  # pragma: no cover
    if pixels.ndim == 3:
        if pixels.shape[1:] != (HEIGHT, WIDTH):
            raise InvalidInputError(
                f"instance 0: expected 28 rows of 28 numbers, got shape {list(pixels.shape[1:])}",
                reason="wrong_size",
            )
        pixels = pixels.reshape(-1, FEATURES)
    elif pixels.shape[1] != FEATURES:
        raise InvalidInputError(
            f"instance 0: expected 784 numbers (or 28 rows of 28), got {pixels.shape[1]}",
            reason="wrong_size",
        )
    return pixels


def decode_raw(body: bytes, limits: Limits) -> Array:
    if not body or len(body) % FEATURES:
        raise InvalidInputError(
            f"octet-stream body must be N x 784 uint8 pixels (N >= 1); got {len(body)} bytes",
            reason="wrong_size",
        )
    rows = len(body) // FEATURES
    _check_count(rows, limits)
    raw = np.frombuffer(body, dtype=np.uint8).reshape(rows, FEATURES)
    return np.divide(raw, _SCALE, dtype=np.float32)


def decode_png(body: bytes) -> Array:
    try:
        image = Image.open(io.BytesIO(body), formats=["PNG"])
        if image.size != (WIDTH, HEIGHT):
            raise InvalidInputError(
                f"instance 0: PNG must be 28x28 pixels, got {image.size[0]}x{image.size[1]}",
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
    return np.divide(gray.reshape(1, FEATURES), _SCALE, dtype=np.float32)


def _check_count(count: int, limits: Limits) -> None:
    if not 1 <= count <= limits.max_instances:
        raise InvalidInputError(
            f"a request holds 1 to {limits.max_instances} instances; got {count}",
            reason="instance_count",
        )


def _check_values(pixels: npt.NDArray[np.float64]) -> None:
    """Finite and in [0, 1], vectorised; the message points at the first offending value."""
    bad = ~np.isfinite(pixels) | (pixels < 0.0) | (pixels > 1.0)
    if bad.any():
        index, pixel = (int(i) for i in np.argwhere(bad)[0])
        value = float(pixels[index, pixel])
        finite = bool(np.isfinite(value))
        problem = "is outside [0, 1]" if finite else "is not finite"
        raise InvalidInputError(
            f"instance {index}: value {value!r} at pixel {pixel} {problem} "
            "(send pixel values divided by 255)",
            reason="out_of_range" if finite else "non_finite",
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


def _diagnose(body: bytes, limits: Limits) -> None:
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
    _check_count(len(instances), limits)
    for index, instance in enumerate(instances):
        problem = _instance_problem(instance)
        if problem:
            reason, text = problem
            raise InvalidInputError(f"instance {index}: {text}", reason=reason)
    with contextlib.suppress(ValueError):  # ValueError: mixed layouts, reported below
        # Every instance is well-shaped: the problem is a value (named with its index).
        _check_values(np.array(instances, dtype=np.float64).reshape(len(instances), FEATURES))
    raise InvalidInputError(
        "instances mix flat (784) and nested (28x28) layouts; use one", reason="wrong_size"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _instance_problem(instance: object) -> tuple[str, str] | None:
    """``(reason, message)`` of the first problem of one instance, None if it is well-formed."""
    if not isinstance(instance, list):
        return "wrong_type", f"expected a list of numbers, got {type(instance).__name__}"
    if instance and isinstance(instance[0], list):
        if len(instance) != HEIGHT or any(
            not isinstance(row, list) or len(row) != WIDTH for row in instance
        ):
            return "wrong_size", "expected 28 rows of 28 numbers"
        if not all(_is_number(v) for row in instance for v in row):
            return "wrong_type", "every pixel must be a number"
        return None
    if len(instance) != FEATURES:
        return "wrong_size", f"expected 784 numbers (or 28 rows of 28), got {len(instance)}"
    if not all(_is_number(v) for v in instance):
        return "wrong_type", "every pixel must be a number"
    return None
