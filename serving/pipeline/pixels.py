"""Pixels as the model takes them: float32 in [0, 1], one row of ``features`` per image.

Both HTTP codecs (and the gRPC one) accept UINT8 pixels (scaled by 1/255 here) or floats
already in [0, 1] (checked here); the codecs only word the error their protocol expects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
SCALE = np.float32(255.0)


def from_uint8(raw: npt.NDArray[np.uint8]) -> Array:
    """UINT8 pixels -> float32 pixel / 255 (the training preprocessing)."""
    scaled: Array = np.divide(raw, SCALE, dtype=np.float32)
    return scaled


@dataclass(frozen=True, slots=True)
class BadPixel:
    """The first value outside [0, 1] (or not finite), in row-major order."""

    row: int
    pixel: int
    value: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)

    @property
    def problem(self) -> str:
        return "is outside [0, 1]" if self.finite else "is not finite"


def first_bad_pixel(pixels: npt.NDArray[Any]) -> BadPixel | None:
    """None when every value of the 2-D ``pixels`` is finite and in [0, 1] (the fast check
    first: one min and one max, both False for NaN)."""
    if pixels.size == 0 or (pixels.min() >= 0.0 and pixels.max() <= 1.0):
        return None
    bad = ~np.isfinite(pixels) | (pixels < 0.0) | (pixels > 1.0)
    row, pixel = (int(i) for i in np.argwhere(bad)[0])
    return BadPixel(row, pixel, float(pixels[row, pixel]))


def side(features: int) -> int | None:
    """The side of a square image of ``features`` pixels (28 for 784), None if not square."""
    root = math.isqrt(features)
    return root if root * root == features else None


def tensor_pixels(name: str, values: npt.NDArray[Any], error: Callable[[str], Exception]) -> Array:
    """An OIP tensor's values (HTTP or gRPC) as pixels: UINT8 scaled by 1/255, FP32 checked
    finite and in [0, 1]; else ``error`` (the door's own type) naming the first bad value."""
    if values.dtype == np.uint8:
        return from_uint8(values)
    pixels: Array = values.astype(np.float32, copy=False)
    bad = first_bad_pixel(pixels)
    if bad is not None:
        raise error(
            f"input {name!r}: instance {bad.row}: value {bad.value!r} at pixel {bad.pixel} "
            f"{bad.problem} (send FP32 pixel / 255, or UINT8 pixels)"
        )
    return pixels
