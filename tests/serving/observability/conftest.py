"""Fixtures: a real tiny ONNX model and the real app (``create_app``) with an Observability that
exports spans to memory and writes to a fresh Prometheus registry per test, plus two test routes
(a path parameter and a failing handler) added through a plugin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from litestar import get
from litestar.params import FromPath
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from model_repository.layout import FP32_FILE, METADATA_FILE
from model_repository.metadata import Metadata, load_metadata
from serving.app import ServiceApp, create_app
from serving.observability import Observability
from serving.settings import Settings
from tests.support.routes import RoutesPlugin

Array = npt.NDArray[np.float32]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def model_dir(tiny_model_repository: Path) -> Path:
    return tiny_model_repository / "mnist" / "1"


@pytest.fixture(scope="session")
def metadata(model_dir: Path) -> Metadata:
    return load_metadata(model_dir / METADATA_FILE)


@pytest.fixture(scope="session")
def predict(model_dir: Path) -> Callable[[Array], Array]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / FP32_FILE), options)

    def run(batch: Array) -> Array:
        result: Array = session.run(["probabilities"], {"pixels": batch})[0]
        return result

    return run


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


AppFactory = Callable[..., tuple[ServiceApp, Observability]]


@get("/items/{item_id:int}", sync_to_thread=False)
def item(item_id: FromPath[int]) -> int:
    return item_id


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("a bug in a handler")


@pytest.fixture
def settings_for(model_dir: Path) -> Callable[..., Settings]:
    """Settings that serve the tiny model, with the test's own values on top."""

    def build(**values: Any) -> Settings:
        return Settings(model_repository=model_dir.parents[1], **values)

    return build


@pytest.fixture
def make_app(
    settings_for: Callable[..., Settings],
    metadata: Metadata,
    registry: CollectorRegistry,
    exporter: InMemorySpanExporter,
) -> AppFactory:
    """Build the service's app (``create_app``) with test-owned registry and span export."""

    def factory(**settings_values: Any) -> tuple[ServiceApp, Observability]:
        settings = settings_for(**settings_values)
        observability = Observability(
            settings,
            metadata,
            registry=registry,
            span_processor=SimpleSpanProcessor(exporter),
        )
        app = create_app(settings, observability=observability, plugins=[RoutesPlugin(item, boom)])
        return app, observability

    return factory
