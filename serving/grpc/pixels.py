"""The pixel rule every protocol applies: UINT8 pixels are divided by 255, FP32 pixels must be
finite and in [0, 1], the first bad value is named by instance and pixel.

A pure function with no protocol in it, so that every codec can share it. The HTTP OIP codec
(serving/api/v2/codec.py, ``_scaled``) applies the same rule with the same messages; once the
request pipeline lands, one copy of the two goes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
_SCALE = np.float32(255.0)


class PixelError(ValueError):
    """A pixel value the model cannot take; the message names where it is and what is wrong."""


def checked_pixels(name: str, values: npt.NDArray[Any]) -> Array:
    """``values`` ``(rows, features)`` as float32 model input: uint8 / 255, float32 checked.

    Raises :class:`PixelError` for the first value that is not finite or outside [0, 1].
    """
    if values.dtype == np.uint8:
        scaled: Array = np.divide(values, _SCALE, dtype=np.float32)
        return scaled
    pixels: Array = values.astype(np.float32, copy=False)
    if pixels.min() >= 0.0 and pixels.max() <= 1.0:  # False for NaN: reported below
        return pixels
    bad = ~np.isfinite(pixels) | (pixels < 0.0) | (pixels > 1.0)
    row, pixel = (int(i) for i in np.argwhere(bad)[0])
    value = float(pixels[row, pixel])
    problem = "is not finite" if not math.isfinite(value) else "is outside [0, 1]"
    raise PixelError(
        f"input {name!r}: instance {row}: value {value!r} at pixel {pixel} {problem} "
        "(send FP32 pixel / 255, or UINT8 pixels)"
    )
