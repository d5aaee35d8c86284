"""The in-process floor: onnxruntime ``session.run`` alone, per sample, at several batch sizes.

Same session options as the service (one intra-op thread, no spinning): what the model costs
with no HTTP, no validation and no batching queue. The service cannot go below this.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort


@dataclass(frozen=True, slots=True)
class FloorPoint:
    variant: str
    batch: int
    median_batch_us: float

    @property
    def per_sample_us(self) -> float:
        return self.median_batch_us / self.batch


def session(model: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def measure(
    variant: str,
    model: Path,
    pixels: npt.NDArray[np.uint8],
    batches: tuple[int, ...],
    seconds_per_batch: float,
) -> list[FloorPoint]:
    """Median wall time of ``session.run`` per batch size, run for about ``seconds_per_batch``."""
    sess = session(model)
    model_input = sess.get_inputs()[0]
    trailing = [d for d in model_input.shape[1:]]
    points = []
    for batch in batches:
        rows = np.resize(pixels, (batch, pixels.shape[1])).astype(np.float32) / 255.0
        if len(trailing) == 2:
            rows = rows.reshape(batch, 28, 28)
        feed = {model_input.name: rows}
        for _ in range(20):
            sess.run(None, feed)
        timings: list[float] = []
        deadline = time.perf_counter() + seconds_per_batch
        while time.perf_counter() < deadline or len(timings) < 50:
            start = time.perf_counter()
            sess.run(None, feed)
            timings.append((time.perf_counter() - start) * 1e6)
        points.append(FloorPoint(variant, batch, statistics.median(timings)))
    return points
