from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from training.idx import IdxFormatError, load_test_digits, parse_idx, read_idx


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_round_trip_of_generated_images() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images)), images)


def test_gzip_file_is_decompressed(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "magic"),
        (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x07", "element type"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x07", "does not match shape"),
    ],
)
def test_malformed_bytes_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(IdxFormatError, match=message):
        parse_idx(raw)


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(IdxFormatError, match=r"broken\.gz.*gzip"):
        read_idx(path)


def test_real_test_set(mnist_dir: Path) -> None:
    images, labels = load_test_digits(mnist_dir)
    assert images.shape == (10_000, 28, 28)
    assert labels.shape == (10_000,)
    assert set(np.unique(labels)) == set(range(10))
    # The first test digits of the genuine set are well known: 7, 2, 1, 0, 4.
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
