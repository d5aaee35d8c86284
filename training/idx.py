"""Reader for the IDX format MNIST is published in (gzip-compressed or raw).

Layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian uint32 per dimension, then the data in C order. Only uint8 data is needed for MNIST.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt

UINT8_TYPE_CODE = 0x08

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"


class IdxFormatError(ValueError):
    """The bytes are not a well-formed uint8 IDX file."""


def parse_idx(raw: bytes) -> npt.NDArray[np.uint8]:
    """Parse the bytes of an (uncompressed) IDX file into an array of its declared shape."""
    if len(raw) < 4:
        raise IdxFormatError(f"too short for an IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError("bad magic number: the first two bytes must be zero")
    if raw[2] != UINT8_TYPE_CODE:
        raise IdxFormatError(f"unsupported element type 0x{raw[2]:02x} (only uint8, 0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise IdxFormatError(f"truncated header for {ndim} dimensions")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise IdxFormatError(
            f"data size {len(raw) - header} does not match shape {shape} ({expected} bytes)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """Read an IDX file; ``.gz`` files are decompressed."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise IdxFormatError(f"{path.name}: not a valid gzip file ({exc})") from exc
    try:
        return parse_idx(raw)
    except IdxFormatError as exc:
        raise IdxFormatError(f"{path.name}: {exc}") from exc


def load_test_digits(
    data_dir: Path,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The MNIST test set as ``(images (n, 28, 28) uint8, labels (n,) uint8)``."""
    return read_idx(data_dir / TEST_IMAGES), read_idx(data_dir / TEST_LABELS)
