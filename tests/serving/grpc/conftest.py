"""In-process gRPC fixtures: the real Service on the tiny model, its GrpcServer on a loopback
port in the test's own event loop, a gate that holds a batch in onnxruntime, and an observer that
shows what the batcher did with each request. The official aio client talks to it over TCP."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from serving.access.guard import Guard
from serving.batching import QueuedRequest, RejectReason
from serving.grpc import GrpcServer
from serving.lifecycle import Service
from serving.model import LoadedModel, load_model
from serving.pipeline import Pipeline
from serving.pipeline.stages import IssueIds
from serving.settings import Settings
from serving.testing import free_port
from tests.support.waiting import HANG_S

Array = npt.NDArray[np.float32]


class GatedSession:
    """The real session, but ``run`` waits while the gate is closed (on the inference thread:
    the event loop keeps serving). ``computed`` holds the row count of every batch run."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.computed: list[int] = []

    def run(self, outputs: list[str], feeds: dict[str, Array]) -> Any:
        self.entered.set()
        assert self.open.wait(timeout=HANG_S)  # only a guard: a test that never opens it fails
        self.computed.extend(int(f.shape[0]) for f in feeds.values())
        return self._session.run(outputs, feeds)

    def get_inputs(self) -> Any:
        return self._session.get_inputs()


class Recorder:
    """A BatchObserver that keeps what happened to each request."""

    def __init__(self) -> None:
        self.enqueued: list[QueuedRequest] = []
        self.batches: list[list[QueuedRequest]] = []
        self.rejected: list[tuple[RejectReason, int]] = []

    def on_enqueued(self, request: QueuedRequest) -> None:
        self.enqueued.append(request)

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        self.batches.append(list(requests))

    def on_batch_end(self, *args: Any) -> None:
        pass

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        self.rejected.append((reason, rows))


def numbered(labels: Sequence[int], confidences: Sequence[float], version: str) -> list[str]:
    """Prediction ids that say what they identify: ``v<version>-<row>-<label>``."""
    return [f"v{version}-{row}-{label}" for row, label in enumerate(labels)]


@dataclasses.dataclass
class Running:
    service: Service
    server: GrpcServer
    session: GatedSession
    recorder: Recorder

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def close_gate(self) -> None:
        self.session.entered.clear()
        self.session.open.clear()

    def open_gate(self) -> None:
        self.session.open.set()

    def queued(self, rows: int) -> QueuedRequest:
        """The last request enqueued, once one with ``rows`` rows is there."""
        return next(r for r in reversed(self.recorder.enqueued) if r.rows == rows)


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    """Wait for a state (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


@pytest.fixture
def grpc_settings(tiny_model_repository: Path) -> Settings:
    return Settings(
        model_repository=tiny_model_repository,
        grpc_port=free_port(),
        inline_max_rows=0,  # every batch on the inference thread, where the gate holds it
        model_poll_interval_s=0,
        request_timeout_ms=30_000,
        metrics_enabled=False,
    )


@asynccontextmanager
async def serving(
    settings: Settings, guard: Guard | None = None, issue_ids: IssueIds = numbered
) -> AsyncIterator[Running]:
    """Service + Pipeline + GrpcServer in this event loop; stopped (gate open) on exit.
    ``guard``: access control (default: no keys file); ``issue_ids``: the prediction ids."""
    sessions: list[GatedSession] = []

    def loader(settings: Settings) -> LoadedModel:
        model = load_model(settings)
        sessions.append(GatedSession(model.session))
        return dataclasses.replace(model, session=sessions[-1])

    recorder = Recorder()
    service = Service(settings, model_loader=loader, observer=recorder)
    await service.start()
    server = GrpcServer(Pipeline(service, issue_ids, guard=guard))
    await server.start()
    running = Running(service, server, sessions[-1], recorder)
    try:
        yield running
    finally:
        running.open_gate()
        await server.stop(5)
        await service.stop()
