"""Shared fixtures: a clean environment, a tiny real model repository, and the two ways to run
the service on it: in-process (``app_client``) and as a real server process (``serving_server``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from loadtest.data import mnist_dir as default_mnist_dir
from serving.app import create_app
from serving.settings import Settings
from serving.testing import AppClient
from tests.support.server import RunningServer, free_port, serving_process
from tests.support.tiny_model import write_model_version
from training.data import IDX_FILES


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SERVING_*/OTEL_*/PROMETHEUS_MULTIPROC_DIR from the developer's shell leaks in."""
    for key in list(os.environ):
        if key.startswith(("SERVING_", "OTEL_")) or key in ("PROMETHEUS_MULTIPROC_DIR", "PORT"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The local MNIST copy: $MNIST_DIR, else ../shared/data/mnist beside the repository."""
    path = default_mnist_dir()
    if not all((path / name).is_file() for name in IDX_FILES):
        pytest.fail(f"MNIST IDX files not found in {path}: set MNIST_DIR (tests never download)")
    return path


@pytest.fixture(scope="session")
def tiny_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding ``mnist`` version 1 (fp32 + int8) built with onnx.helper."""
    root = tmp_path_factory.mktemp("model-repository")
    write_model_version(root, "mnist", 1)
    return root


@pytest.fixture(scope="session")
def poison_model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``tiny_model_repository``, but onnxruntime raises on a row whose pixel 0 is 1.0."""
    root = tmp_path_factory.mktemp("poison-repository")
    write_model_version(root, "mnist", 1, poison=True)
    return root


@pytest.fixture
def settings(tiny_model_repository: Path) -> Settings:
    """Default settings serving the tiny model."""
    return Settings(model_repository=tiny_model_repository)


AppStarter = Callable[..., AppClient]


@pytest.fixture
def app_client(settings: Settings) -> AppStarter:
    """``with app_client(settings, model_loader=..., observability=...) as client:`` the real
    app in-process (``create_app``; the ``settings`` fixture when none are given), under
    Litestar's test client; ``client.service`` is its Service."""

    def start(app_settings: Settings | None = None, **create: Any) -> AppClient:
        return AppClient(create_app(app_settings or settings, **create))

    return start


@pytest.fixture
def loopback_port() -> int:
    return free_port()


ServerStarter = Callable[..., AbstractContextManager[RunningServer]]


@pytest.fixture
def serving_server(tmp_path: Path) -> ServerStarter:
    """``with serving_server({"SERVING_MODEL_REPOSITORY": ...}) as server:`` -> base_url, process.

    Starts ``python -m serving`` on 127.0.0.1 (free port unless SERVING_PORT is given) and waits
    for /readyz; stops it on exit. Output goes to ``tmp_path/server-<n>.log``.
    """
    count = 0

    def start(
        env: dict[str, str], *, ready_timeout_s: float = 30.0, args: tuple[str, ...] = ()
    ) -> AbstractContextManager[RunningServer]:
        nonlocal count
        count += 1
        log = tmp_path / f"server-{count}.log"
        return serving_process(env, log, ready_timeout_s=ready_timeout_s, args=args)

    return start
