"""The shared pixel rule: UINT8 / 255, FP32 in [0, 1] and finite, the first fault named."""

from __future__ import annotations

import numpy as np
import pytest

from serving.grpc.pixels import PixelError, checked_pixels


def test_uint8_is_divided_by_255_and_fp32_passes_unchanged() -> None:
    raw = np.array([[0, 51, 255]], dtype=np.uint8)
    scaled = checked_pixels("p", raw)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, np.array([[0.0, 51.0, 255.0]], np.float32) / 255)
    fp32 = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert checked_pixels("p", fp32) is fp32  # no copy on the common path


@pytest.mark.parametrize(
    ("value", "problem"),
    [(1.0001, "is outside [0, 1]"), (-0.5, "is outside [0, 1]"), (np.nan, "is not finite"),
     (np.inf, "is not finite")],
)  # fmt: skip
def test_the_first_bad_value_is_named_by_instance_and_pixel(value: float, problem: str) -> None:
    pixels = np.zeros((3, 4), dtype=np.float32)
    pixels[1, 2] = value
    pixels[2, 0] = 7.0  # a later fault is not the one reported
    with pytest.raises(PixelError, match=r"input 'p': instance 1: value .* at pixel 2") as raised:
        checked_pixels("p", pixels)
    assert problem in str(raised.value)
