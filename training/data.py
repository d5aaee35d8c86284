"""MNIST loading: the usual Keras download, or a local directory of the four IDX ``.gz`` files.

Whatever the source, the arrays are validated (shape, dtype, label range, sizes) before any
training starts, so a wrong directory fails in seconds with a message that says how to fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.idx import (
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    IdxFormatError,
    read_idx,
)

MNIST_DIR_ENV = "MNIST_DIR"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)

U8Array = npt.NDArray[np.uint8]


class DataError(Exception):
    """MNIST could not be loaded or is malformed; the message says how to fix it."""


@dataclass(frozen=True)
class Mnist:
    """Raw MNIST: uint8 images ``(n, 28, 28)`` and uint8 labels ``(n,)``."""

    x_train: U8Array
    y_train: U8Array
    x_test: U8Array
    y_test: U8Array
    source: str

    def subset(self, train: int | None = None, test: int | None = None) -> Mnist:
        """The first ``train`` / ``test`` examples (for quick runs and tests)."""
        return Mnist(
            self.x_train[:train],
            self.y_train[:train],
            self.x_test[:test],
            self.y_test[:test],
            self.source,
        )


def scale(images: U8Array) -> npt.NDArray[np.float32]:
    """The preprocessing contract: flatten row-major to 784 and scale by 1/255 into [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)


def holdout(
    images: npt.NDArray[np.float32], labels: U8Array, fraction: float
) -> tuple[tuple[npt.NDArray[np.float32], U8Array], tuple[npt.NDArray[np.float32], U8Array]]:
    """``(fit, validation)``: the last ``fraction`` of the rows held out, as Keras's
    ``validation_split`` does, so the split is the same for every run on the same data."""
    count = round(len(images) * fraction)
    cut = len(images) - count
    return (images[:cut], labels[:cut]), (images[cut:], labels[cut:])


def validate(data: Mnist) -> Mnist:
    """Check shapes, dtypes, sizes and label range; raise ``DataError`` naming the problem."""
    for split, images, labels in (
        ("train", data.x_train, data.y_train),
        ("test", data.x_test, data.y_test),
    ):
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(
                f"{split}: expected uint8 arrays, got {images.dtype} images / {labels.dtype} labels"
            )
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"{split}: expected images of shape (n, 28, 28), got {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{split}: {len(images)} images but labels of shape {labels.shape} "
                "(mismatched image and label files?)"
            )
        if len(labels) == 0:
            raise DataError(f"{split}: no examples")
        if int(labels.max()) >= NUM_CLASSES:
            raise DataError(f"{split}: label {int(labels.max())} outside 0..{NUM_CLASSES - 1}")
    return data


def load_from_dir(data_dir: Path) -> Mnist:
    """Read the four IDX ``.gz`` files from ``data_dir``."""
    if not data_dir.is_dir():
        raise DataError(
            f"MNIST directory {data_dir} does not exist; pass --data-dir (or set {MNIST_DIR_ENV}) "
            f"to a directory holding {', '.join(IDX_FILES)}"
        )
    missing = [name for name in IDX_FILES if not (data_dir / name).is_file()]
    if missing:
        raise DataError(
            f"MNIST directory {data_dir} lacks {', '.join(missing)}; it must hold all four IDX "
            f"files ({', '.join(IDX_FILES)})"
        )
    try:
        x_train, y_train, x_test, y_test = (read_idx(data_dir / name) for name in IDX_FILES)
    except IdxFormatError as exc:
        raise DataError(f"MNIST directory {data_dir}: {exc}") from exc
    return validate(Mnist(x_train, y_train, x_test, y_test, source=str(data_dir)))


def download() -> Mnist:
    """MNIST the usual Keras way (downloads once into ~/.keras/datasets)."""
    try:
        import keras  # TensorFlow/Keras only when this path is taken

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # network errors surface as many types (URLError, OSError, ...)
        raise DataError(
            f"could not download MNIST ({type(exc).__name__}: {exc}); without internet access "
            f"pass --data-dir DIR or set {MNIST_DIR_ENV}=DIR to a directory holding "
            f"{', '.join(IDX_FILES)}"
        ) from exc
    return validate(Mnist(x_train, y_train, x_test, y_test, source="keras.datasets.mnist"))


def load(data_dir: Path | None = None) -> Mnist:
    """The ``data_dir`` if given, else ``$MNIST_DIR`` if set, else the Keras download."""
    if data_dir is None and os.environ.get(MNIST_DIR_ENV):
        data_dir = Path(os.environ[MNIST_DIR_ENV])
    return load_from_dir(data_dir) if data_dir is not None else download()
