"""Rollout fixtures: small real models on real MNIST (``models.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.rollout.models import Mnist, load


@pytest.fixture(scope="session")
def mnist_models(mnist_dir: Path) -> Mnist:
    return load(mnist_dir)
