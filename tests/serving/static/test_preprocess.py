"""The page's preprocessing (serving/static/preprocess.js), run in Chromium on synthetic drawings.

It must do what made the MNIST digits: crop the ink, fit it to 20x20 keeping its aspect, centre
its centre of mass in 28x28. So the same shape drawn small or large, centred or in a corner,
gives the same 28x28 image; it agrees with a NumPy version of the same steps; and a real MNIST
digit, blown up as if drawn on the pad, comes back close to itself.
"""

from __future__ import annotations

import base64
import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from playwright.sync_api import Browser

from tests.support.browser import OfflinePage, offline_page
from tests.support.server import RunningServer
from training.data import Mnist

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
PAD = 280  # the pad's size in canvas pixels at a device pixel ratio of 1
SIZE, BOX, THRESHOLD = 28, 20, 16
#: A "7" with a bar: polyline vertices in a unit square (y down).
SEVEN = [(0.15, 0.1), (0.85, 0.1), (0.4, 0.95)]
BAR = [(0.35, 0.5), (0.75, 0.5)]


@pytest.fixture(scope="module")
def page(browser: Browser, page_server: RunningServer) -> Iterator[OfflinePage]:
    with offline_page(browser, page_server.base_url) as opened:
        opened.page.goto(opened.url("/"))
        yield opened


def to_mnist_js(page: OfflinePage, ink: U8) -> U8 | None:
    """preprocess.js's ``toMnist`` on ``ink`` (height x width, 0..255), in the browser."""
    height, width = ink.shape
    result: list[int] | None = page.page.evaluate(
        """async ([encoded, width, height]) => {
            const { toMnist } = await import("/static/preprocess.js");
            const ink = Uint8ClampedArray.from(atob(encoded), (c) => c.charCodeAt(0));
            const pixels = toMnist(ink, width, height);
            return pixels === null ? null : Array.from(pixels);
        }""",
        # base64: a list of 78,400 numbers takes Playwright about a second to serialise.
        [base64.b64encode(ink.tobytes()).decode(), width, height],
    )
    return None if result is None else np.array(result, dtype=np.uint8).reshape(SIZE, SIZE)


def round_half_up(value: float) -> int:
    """JavaScript's Math.round."""
    return math.floor(value + 0.5)


def area_weights(n: int, m: int) -> F64:
    """(m, n): target cell i averages source interval [i n/m, (i+1) n/m) by overlap."""
    step = n / m
    starts = np.arange(m)[:, None] * step
    cells = np.arange(n)[None, :]
    overlap = np.minimum(starts + step, cells + 1) - np.maximum(starts, cells)
    weights: F64 = np.clip(overlap, 0.0, None) / step
    return weights


def to_mnist_reference(ink: U8) -> U8 | None:
    """The same steps in NumPy, written from the MNIST description, not from the JS."""
    ys, xs = np.nonzero(ink > THRESHOLD)
    if xs.size == 0:
        return None
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float64)
    height, width = crop.shape
    scale = BOX / max(height, width)
    w, h = max(1, round_half_up(width * scale)), max(1, round_half_up(height * scale))
    small = area_weights(height, h) @ crop @ area_weights(width, w).T / 255.0
    grid_y, grid_x = np.mgrid[0:h, 0:w]  # pixel indices: MNIST centres on pixel (14, 14)
    dx = round_half_up(SIZE / 2 - float((small * grid_x).sum() / small.sum()))
    dy = round_half_up(SIZE / 2 - float((small * grid_y).sum() / small.sum()))
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    values = np.floor(np.minimum(small, 1.0) * 255 + 0.5).astype(np.uint8)
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < SIZE and 0 <= x + dx < SIZE:
                out[y + dy, x + dx] = values[y, x]
    return out


def draw(polylines: list[list[tuple[float, float]]], size: float, left: float, top: float) -> U8:
    """Polylines of the unit square drawn ``size`` canvas pixels wide at (left, top), with a
    pen as wide as a proportionally scaled drawing has, anti-aliased."""
    grid_y, grid_x = np.mgrid[0:PAD, 0:PAD] + 0.5
    distance = np.full((PAD, PAD), np.inf)
    for line in polylines:
        for (x0, y0), (x1, y1) in itertools.pairwise(line):
            a = np.array([left + x0 * size, top + y0 * size])
            b = np.array([left + x1 * size, top + y1 * size])
            ab = b - a
            t = np.clip(((grid_x - a[0]) * ab[0] + (grid_y - a[1]) * ab[1]) / (ab @ ab), 0, 1)
            d = np.hypot(grid_x - (a[0] + t * ab[0]), grid_y - (a[1] + t * ab[1]))
            distance = np.minimum(distance, d)
    half_pen = 0.06 * size
    return (np.clip(half_pen - distance + 0.5, 0.0, 1.0) * 255).round().astype(np.uint8)


def centre_of_mass(image: U8) -> tuple[float, float]:
    grid_y, grid_x = np.mgrid[0:SIZE, 0:SIZE]
    total = float(image.sum())
    return float((image * grid_x).sum()) / total, float((image * grid_y).sum()) / total


def mean_difference(a: U8, b: U8) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_an_empty_pad_gives_nothing_to_send(page: OfflinePage) -> None:
    assert to_mnist_js(page, np.zeros((PAD, PAD), dtype=np.uint8)) is None
    faint = np.full((PAD, PAD), THRESHOLD, dtype=np.uint8)  # below the ink threshold
    assert to_mnist_js(page, faint) is None


def test_off_centre_and_too_large_gives_the_centred_image(page: OfflinePage) -> None:
    centred = to_mnist_js(page, draw([SEVEN, BAR], 140, 70, 70))
    large_in_a_corner = to_mnist_js(page, draw([SEVEN, BAR], 255, 3, 20))
    small_in_a_corner = to_mnist_js(page, draw([SEVEN, BAR], 70, 200, 5))
    assert centred is not None
    assert large_in_a_corner is not None
    assert small_in_a_corner is not None
    for other in (large_in_a_corner, small_in_a_corner):
        # Grey levels 0..255: the same digit within a few levels on average.
        assert mean_difference(centred, other) < 6.0
        assert np.corrcoef(centred.ravel(), other.ravel())[0, 1] > 0.95
    for image in (centred, large_in_a_corner, small_in_a_corner):
        x, y = centre_of_mass(image)
        assert abs(x - 14) <= 0.5
        assert abs(y - 14) <= 0.5
        rows, cols = np.nonzero(image)
        assert max(np.ptp(rows), np.ptp(cols)) + 1 == BOX  # the longer side fills the 20-pixel box
        assert image[0].max() == image[-1].max() == image[:, 0].max() == image[:, -1].max() == 0


def test_a_wide_drawing_keeps_its_aspect_ratio(page: OfflinePage) -> None:
    dash = to_mnist_js(page, draw([[(0.0, 0.5), (1.0, 0.5)]], 200, 40, 40))
    assert dash is not None
    rows, cols = np.nonzero(dash)
    assert np.ptp(cols) + 1 == BOX
    assert np.ptp(rows) + 1 <= 4  # a flat stroke stays flat, it is not stretched to a square


@pytest.mark.parametrize("case", ["seven", "corner", "mnist-0", "mnist-1", "mnist-2"])
def test_matches_the_numpy_reference(page: OfflinePage, mnist: Mnist, case: str) -> None:
    if case.startswith("mnist"):
        digit = mnist.x_test[int(case.split("-")[1])]
        ink: U8 = np.kron(digit, np.ones((10, 10), dtype=np.uint8))
    else:
        ink = draw([SEVEN, BAR], 140, 70, 70) if case == "seven" else draw([SEVEN], 230, 40, 0)
    got, expected = to_mnist_js(page, ink), to_mnist_reference(ink)
    assert got is not None
    assert expected is not None
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_a_real_mnist_digit_drawn_large_comes_back_close_to_itself(
    page: OfflinePage, mnist: Mnist
) -> None:
    similarities: list[Any] = []
    for index in range(10):
        digit = mnist.x_test[index]
        got = to_mnist_js(page, np.kron(digit, np.ones((10, 10), dtype=np.uint8)))
        assert got is not None
        similarities.append(np.corrcoef(got.ravel(), digit.ravel())[0, 1])
    assert min(similarities) > 0.98, similarities
    assert page.problems() == []
