"""API fixtures: the real app on the tiny model, plus a gate to hold a batch in onnxruntime."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from serving.lifecycle import ModelLoader
from serving.model import LoadedModel, load_model
from serving.settings import Settings
from tests.support.waiting import HANG_S

Array = npt.NDArray[np.float32]


class GatedSession:
    """The real session, but ``run`` waits on a gate: lets a test hold a batch in compute.

    Only on the inference thread: apps using it set ``inline_max_rows=0``, else a lone request
    computed inline would hold the event loop itself.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.computed: list[Array] = []

    def run(self, outputs: list[str], feeds: dict[str, Array]) -> Any:
        self.entered.set()
        assert self.gate.wait(timeout=HANG_S)  # only a guard: a test that never opens it fails
        self.computed.extend(np.array(f) for f in feeds.values())
        return self._session.run(outputs, feeds)

    def get_inputs(self) -> Any:
        return self._session.get_inputs()


@dataclasses.dataclass
class Gated:
    session: GatedSession | None = None

    def loader(self) -> ModelLoader:
        def load(settings: Settings) -> LoadedModel:
            model = load_model(settings)
            self.session = GatedSession(model.session)
            return dataclasses.replace(model, session=self.session)

        return load


@pytest.fixture
def gated() -> Gated:
    return Gated()


@pytest.fixture(scope="session")
def reference(tiny_model_repository: Path) -> Callable[[Array], Array]:
    """onnxruntime run directly on the same model file: the expected answers."""
    session = ort.InferenceSession(str(tiny_model_repository / "mnist" / "1" / "model.onnx"))

    def run(pixels: Array) -> Array:
        result: Array = session.run(["probabilities"], {"pixels": pixels})[0]
        return result

    return run
