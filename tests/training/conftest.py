"""Fixtures for the training tests: the real MNIST data and a small model trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data import Mnist, load_from_dir


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> Mnist:
    return load_from_dir(mnist_dir)


@pytest.fixture(scope="session")
def small_published(tmp_path_factory: pytest.TempPathFactory, mnist: Mnist) -> Path:
    """A version published by the real pipeline from a quick run (3000 images, 1 epoch)."""
    from training.pipeline import TrainConfig, run

    root = tmp_path_factory.mktemp("models")
    return run(mnist.subset(train=3000, test=2000), root, "mnist", TrainConfig(epochs=1))
