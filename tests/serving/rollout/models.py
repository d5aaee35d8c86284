"""Small real models on real MNIST for the rollout tests: nearest-centroid classifiers.

A nearest-centroid classifier is linear (argmin |x - m_k|^2 = argmax 2 m_k.x - |m_k|^2), so
it is a genuine model computed in one matrix product: ~82 % accurate on MNIST, and two of
them fitted on the two halves of the training set disagree on a few percent of the test
rows, as a retrain does. From it the tests derive the candidates of issue 27: a retrain, an
int8 twin (weights rounded to 8 bits), two classes swapped, and a constant model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.idx import TRAIN_IMAGES, TRAIN_LABELS, load_test_digits, read_idx

CLASSES = 10
#: Scales the logits so that confidences look like a trained model's (mean 0.9 at 82 % accuracy).
SHARPNESS = 0.002

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Linear:
    """probabilities = softmax(x @ weights + bias), x = pixels / 255."""

    weights: Floats
    bias: Floats
    permutation: tuple[int, ...] = tuple(range(CLASSES))

    def __call__(self, pixels: Floats) -> Floats:
        logits = pixels @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: Floats = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return probabilities[:, list(self.permutation)]

    def swapped(self, a: int, b: int) -> Linear:
        """The same model with output classes ``a`` and ``b`` exchanged."""
        order = list(self.permutation)
        order[a], order[b] = order[b], order[a]
        return Linear(self.weights, self.bias, tuple(order))

    def int8(self) -> Linear:
        """Weights rounded to 256 levels (symmetric per tensor), as dynamic int8 does."""
        scale = float(np.abs(self.weights).max()) / 127
        rounded = np.round(self.weights / scale).clip(-127, 127) * scale
        return Linear(rounded.astype(np.float32), self.bias, self.permutation)


def centroid_model(pixels: Floats, labels: npt.NDArray[np.integer]) -> Linear:
    means = np.stack([pixels[labels == k].mean(axis=0) for k in range(CLASSES)])
    weights = (2 * means.T * SHARPNESS * 255).astype(np.float32)
    bias = (-(means**2).sum(axis=1) * SHARPNESS * 255).astype(np.float32)
    return Linear(weights, bias)


def constant(pixels: Floats, label: int = 1, confidence: float = 0.99) -> Floats:
    """A model that answers ``label`` whatever the image."""
    out = np.full((pixels.shape[0], CLASSES), (1 - confidence) / (CLASSES - 1), np.float32)
    out[:, label] = confidence
    return out


@dataclass(frozen=True, slots=True)
class Mnist:
    stable: Linear  # fitted on the first half of the training set
    retrain: Linear  # fitted on the second half
    test_pixels: Floats
    test_labels: npt.NDArray[np.int64]


def load(mnist_dir: Path) -> Mnist:
    train = (read_idx(mnist_dir / TRAIN_IMAGES).reshape(-1, 784) / np.float32(255)).astype(
        np.float32
    )
    train_labels = read_idx(mnist_dir / TRAIN_LABELS).astype(np.int64)
    images, labels = load_test_digits(mnist_dir)
    half = train.shape[0] // 2
    return Mnist(
        stable=centroid_model(train[:half], train_labels[:half]),
        retrain=centroid_model(train[half:], train_labels[half:]),
        test_pixels=(images.reshape(-1, 784) / np.float32(255)).astype(np.float32),
        test_labels=labels.astype(np.int64),
    )
