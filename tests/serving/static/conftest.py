"""Browser-test fixtures: one Chromium per test module, and real servers to load the page from.

``page_server`` runs on the tiny model (for the JavaScript unit tests: only the page's files
matter); ``mnist_server`` runs on a real MLP trained here on the real MNIST training set, because
a drawn digit must be recognised by a model that actually reads digits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.browser import launch
from tests.support.server import RunningServer, serving_process
from training.data import Mnist, load_from_dir

#: Two epochs on all 60,000 training images: ~96 % test accuracy in ~15 s of training.
TRAIN_EPOCHS = 2


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module, not per session: while Playwright's sync API is open, its event loop counts as
    running in this thread, and any later test calling ``asyncio.run`` would fail."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


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
def page_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    yield from _server(tiny_model_repository, tmp_path_factory.mktemp("logs") / "page-server.log")


@pytest.fixture(scope="session")
def mnist_server(
    mnist_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    yield from _server(mnist_model_repository, tmp_path_factory.mktemp("logs") / "mnist-server.log")
