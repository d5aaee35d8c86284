"""The example digit shipped for the README is what the README says it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.server import REPO
from training.idx import load_test_digits

EXAMPLE = REPO / "docs" / "examples" / "digit-7.png"


def test_example_png_is_mnist_test_image_0_a_seven(mnist_dir: Path) -> None:
    images, labels = load_test_digits(mnist_dir)
    with Image.open(EXAMPLE) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (28, 28))
        pixels = np.asarray(image)
    np.testing.assert_array_equal(pixels, images[0])
    assert labels[0] == 7
