"""Pixels as the model takes them: uint8 scaled by 1/255, floats checked in [0, 1] with the
first offending value named, and the side of a square image."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from serving.pipeline.pixels import BadPixel, first_bad_pixel, from_uint8, side, tensor_pixels


def test_uint8_pixels_are_scaled_to_float32_in_0_1() -> None:
    raw = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    scaled = from_uint8(raw)
    assert scaled.dtype == np.float32
    assert scaled.tolist() == [[0.0, np.float32(1 / 255), np.float32(128 / 255), 1.0]]


@pytest.mark.parametrize(
    "pixels",
    [
        np.zeros((2, 4), np.float32),
        np.ones((1, 3), np.float64),
        np.array([[0.0, 0.5, 1.0]]),
        np.zeros((0, 784), np.float32),
    ],
)
def test_finite_values_in_0_1_have_no_bad_pixel(pixels: npt.NDArray[Any]) -> None:
    assert first_bad_pixel(pixels) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-0.001, "is outside [0, 1]"),
        (1.0001, "is outside [0, 1]"),
        (255.0, "is outside [0, 1]"),
        (math.nan, "is not finite"),  # NaN passes neither min >= 0 nor max <= 1: still found
        (math.inf, "is not finite"),
        (-math.inf, "is not finite"),
    ],
)
def test_the_first_bad_value_is_named_with_its_row_and_pixel(value: float, problem: str) -> None:
    pixels = np.full((3, 5), 0.5, np.float32)
    pixels[1, 3] = value
    pixels[2, 0] = value  # a later one is not the first
    bad = first_bad_pixel(pixels)
    assert bad is not None
    assert (bad.row, bad.pixel) == (1, 3)
    assert bad.problem == problem
    assert bad.finite == math.isfinite(value)
    assert bad.value == pytest.approx(value, nan_ok=True)


def test_row_major_order_decides_which_is_first() -> None:
    pixels = np.full((2, 3), 0.5, np.float32)
    pixels[0, 2] = 2.0
    pixels[1, 0] = -1.0
    assert first_bad_pixel(pixels) == BadPixel(0, 2, 2.0)


@pytest.mark.parametrize(
    ("features", "expected"), [(784, 28), (1, 1), (4, 2), (10, None), (783, None)]
)
def test_side_of_a_square_image_or_none(features: int, expected: int | None) -> None:
    assert side(features) == expected


class DoorError(Exception):
    """Stands for a door's own error type (MalformedBodyError over HTTP, a status over gRPC)."""


def test_tensor_pixels_scales_uint8_and_keeps_valid_floats() -> None:
    raw = np.array([[0, 255, 51]], np.uint8)
    assert tensor_pixels("pixels", raw, DoorError)[0].tolist() == pytest.approx([0.0, 1.0, 0.2])
    floats = np.array([[0.0, 0.5, 1.0]], np.float64)
    scaled = tensor_pixels("pixels", floats, DoorError)
    assert scaled.dtype == np.float32
    assert scaled.tolist() == [[0.0, 0.5, 1.0]]


def test_tensor_pixels_raises_the_doors_error_naming_the_first_bad_value() -> None:
    values = np.array([[0.5, 0.5], [0.5, 2.0]], np.float32)
    with pytest.raises(DoorError, match=r"input 'img': instance 1: value 2\.0 at pixel 1"):
        tensor_pixels("img", values, DoorError)
