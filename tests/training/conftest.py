"""Fixtures for the training tests: the real MNIST files and a small model trained on them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.data import Mnist, load_from_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The local MNIST copy: $MNIST_DIR, else ../shared/data/mnist beside the repository."""
    path = Path(os.environ.get("MNIST_DIR") or REPO.parent / "shared" / "data" / "mnist")
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"MNIST IDX files not found in {path}: set MNIST_DIR (tests never download)")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> Mnist:
    return load_from_dir(mnist_dir)


@pytest.fixture(scope="session")
def small_published(tmp_path_factory: pytest.TempPathFactory, mnist: Mnist) -> Path:
    """A version published by the real pipeline from a quick run (3000 images, 1 epoch)."""
    from training.pipeline import TrainConfig, run

    root = tmp_path_factory.mktemp("models")
    return run(mnist.subset(train=3000, test=2000), root, "mnist", TrainConfig(epochs=1))
