"""Fixtures: a real tiny ONNX model, a real Batcher, and a small Litestar app wired like the
service (ObservabilityPlugin + Batcher with the plugin's observer), with in-memory span export
and a fresh Prometheus registry per test."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
from litestar import Litestar, get, post
from litestar.exceptions import ClientException
from litestar.params import FromPath, JSONBody
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from model_repository.layout import FP32_FILE, METADATA_FILE
from model_repository.metadata import Metadata, load_metadata
from serving.batching.queue import Batcher
from serving.observability import ObservabilityPlugin
from serving.settings import Settings
from tests.support.tiny_model import write_model_version

Array = npt.NDArray[np.float32]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_version(tmp_path_factory.mktemp("models"))


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


AppFactory = Callable[..., tuple[Litestar, ObservabilityPlugin]]


@pytest.fixture
def make_app(
    metadata: Metadata,
    predict: Callable[[Array], Array],
    registry: CollectorRegistry,
    exporter: InMemorySpanExporter,
) -> AppFactory:
    """Build an app like the service's: POST /predict through a real Batcher."""

    def factory(**settings_values: Any) -> tuple[Litestar, ObservabilityPlugin]:
        settings = Settings(**settings_values)
        plugin = ObservabilityPlugin(
            settings,
            metadata,
            registry=registry,
            span_processor=SimpleSpanProcessor(exporter),
        )
        batcher = Batcher(
            predict,
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_queue_size=settings.max_queue_size,
            observer=plugin.observer,
        )
        plugin.observer.watch_queue(lambda: batcher.queued_rows)

        @asynccontextmanager
        async def lifespan(_: Litestar) -> AsyncIterator[None]:
            await batcher.start()
            try:
                yield
            finally:
                await batcher.stop()

        @post("/predict", status_code=200)
        async def predict_route(
            data: JSONBody[dict[str, list[list[float]]]],
        ) -> dict[str, list[int]]:
            pixels = np.asarray(data["instances"], dtype=np.float32)
            if pixels.ndim != 2 or pixels.shape[1] != 784:
                raise ClientException("instances must be lists of 784 numbers")
            deadline = time.monotonic() + 5.0
            probabilities = await batcher.submit(pixels, deadline)
            return {"labels": probabilities.argmax(axis=1).tolist()}

        @get("/healthz", sync_to_thread=False)
        def healthz() -> str:
            return "ok"

        @get("/items/{item_id:int}", sync_to_thread=False)
        def item(item_id: FromPath[int]) -> int:
            return item_id

        @get("/boom", sync_to_thread=False)
        def boom() -> None:
            raise RuntimeError("a bug in a handler")

        app = Litestar(
            [predict_route, healthz, item, boom],
            plugins=[plugin],
            lifespan=[lifespan],
            debug=False,
            logging_config=None,
        )
        return app, plugin

    return factory
