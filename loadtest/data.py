"""Real MNIST test digits and the request bodies built from them.

Bodies are built once, before the test starts, so a user spends its time sending requests, not
encoding them. JSON pixels are ``pixel / 255`` rounded to 4 decimals: short, and decodable back to
the exact uint8 pixel (error <= 5e-5 * 255, far below 0.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from training.idx import load_test_digits

PIXELS = 28 * 28
JSON_DECIMALS = 4
#: The offline copy beside the repository (../shared/data/mnist), as CI and the tests lay it out.
DEFAULT_MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def mnist_dir(explicit: str | None = None) -> Path:
    """The IDX directory: an explicit path, else ``$MNIST_DIR``, else ``../shared/data/mnist``."""
    return Path(explicit or os.environ.get("MNIST_DIR") or DEFAULT_MNIST_DIR)


def load_digits(
    directory: Path, count: int, offset: int = 0
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """``count`` test digits as ``(images (count, 784) uint8, labels (count,) uint8)``."""
    images, labels = load_test_digits(directory)
    end = min(offset + count, len(images))
    flat = images[offset:end].reshape(-1, PIXELS)
    return np.ascontiguousarray(flat), np.ascontiguousarray(labels[offset:end])


def out_of_distribution(images: npt.NDArray[np.uint8], seed: int = 0) -> npt.NDArray[np.uint8]:
    """The drift scenario's digits: even rows inverted (dark ink on white), odd rows buried in
    uniform noise. Both move the input PSI and the predicted classes far from MNIST's."""
    rng = np.random.default_rng(seed)
    drifted = images.copy()
    drifted[::2] = 255 - drifted[::2]
    noise = rng.integers(0, 256, drifted[1::2].shape, dtype=np.uint8)
    drifted[1::2] = np.maximum(drifted[1::2], noise)
    return drifted


def json_body(pixels: npt.NDArray[np.uint8]) -> bytes:
    """``{"instances": [[784 floats in 0..1], ...]}`` for pixels of shape (n, 784)."""
    scaled = np.round(pixels.reshape(-1, PIXELS).astype(np.float64) / 255.0, JSON_DECIMALS)
    return msgspec.json.encode({"instances": scaled.tolist()})


def binary_body(pixels: npt.NDArray[np.uint8]) -> bytes:
    """N * 784 raw uint8 bytes, row-major: the ``application/octet-stream`` body."""
    return np.ascontiguousarray(pixels.reshape(-1, PIXELS), dtype=np.uint8).tobytes()


class _Instances(msgspec.Struct):
    instances: list[list[float]]


def decode_json_body(body: bytes) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`json_body` (used by tests to prove the body carries the digit)."""
    decoded = msgspec.json.decode(body, type=_Instances)
    return np.rint(np.asarray(decoded.instances, dtype=np.float64) * 255.0).astype(np.uint8)


def decode_binary_body(body: bytes) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`binary_body`."""
    return np.frombuffer(body, dtype=np.uint8).reshape(-1, PIXELS)


@dataclass(frozen=True, slots=True)
class Sample:
    """One prepared request: both encodings of the same ``n`` digits and their true labels."""

    json: bytes
    binary: bytes
    labels: tuple[int, ...]


def build_samples(
    images: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8], per_request: int = 1
) -> list[Sample]:
    """Group consecutive digits ``per_request`` at a time into ready-to-send samples."""
    if per_request < 1:
        raise ValueError("per_request must be >= 1")
    samples = []
    for start in range(0, len(images) - per_request + 1, per_request):
        chunk = images[start : start + per_request]
        samples.append(
            Sample(
                json=json_body(chunk),
                binary=binary_body(chunk),
                labels=tuple(int(v) for v in labels[start : start + per_request]),
            )
        )
    if not samples:
        raise ValueError(f"{len(images)} digits cannot fill one request of {per_request}")
    return samples
