"""Page fixtures: ``mnist_server`` runs on a real MLP trained here on the real MNIST training
set, because a drawn digit must be recognised by a model that actually reads digits (the browser
and the tiny-model ``page_server`` are in tests/serving/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer, serving_process
from training.data import Mnist, load_from_dir

#: Two epochs on all 60,000 training images: ~96 % test accuracy in ~15 s of training.
TRAIN_EPOCHS = 2


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path) -> Mnist:
    return load_from_dir(mnist_dir)


@pytest.fixture(scope="session")
def mnist_model_repository(tmp_path_factory: pytest.TempPathFactory, mnist: Mnist) -> Path:
    """A model repository with one version published by the real training pipeline."""
    from training.pipeline import TrainConfig, run

    root = tmp_path_factory.mktemp("mnist-models")
    run(mnist.subset(test=2000), root, "mnist", TrainConfig(epochs=TRAIN_EPOCHS))
    return root


def _server(repository: Path, log: Path) -> Iterator[RunningServer]:
    with serving_process({"SERVING_MODEL_REPOSITORY": str(repository)}, log) as server:
        yield server


@pytest.fixture(scope="session")
def mnist_server(
    mnist_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    yield from _server(mnist_model_repository, tmp_path_factory.mktemp("logs") / "mnist-server.log")
