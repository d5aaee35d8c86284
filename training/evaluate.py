"""Evaluation of the exported models: accuracy, ONNX-vs-Keras parity, int8 behaviour, speed.

Everything here runs onnxruntime the way the service does (one intra-op thread, no spinning),
so the recorded numbers describe what will be served.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

F32 = npt.NDArray[np.float32]


def session(path: Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, pixels: F32, batch_size: int = 1000) -> F32:
    """Probabilities for all rows, computed in batches of ``batch_size``."""
    name = sess.get_inputs()[0].name
    parts = [
        sess.run(None, {name: pixels[i : i + batch_size]})[0]
        for i in range(0, len(pixels), batch_size)
    ]
    return np.concatenate(parts).astype(np.float32)


def accuracy(probabilities: F32, labels: npt.NDArray[np.integer]) -> float:
    return float((probabilities.argmax(axis=1) == labels).mean())


def agreement(a: F32, b: F32) -> float:
    """Fraction of rows whose argmax is the same."""
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def max_abs_diff(a: F32, b: F32) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def batch_dependence(
    sess: ort.InferenceSession, pixels: F32, batch_size: int = 128
) -> dict[str, float]:
    """How much a row's output changes between running alone and inside a batch.

    Dynamic int8 quantization computes activation scales over the whole batch, so the same row
    can get slightly different probabilities depending on its neighbours; fp32 should not.
    """
    alone = np.concatenate([run(sess, pixels[i : i + 1], 1) for i in range(len(pixels))])
    batched = run(sess, pixels, batch_size)
    return {
        "rows": float(len(pixels)),
        "batch_size": float(batch_size),
        "max_abs_diff": max_abs_diff(alone, batched),
        "argmax_agreement": agreement(alone, batched),
    }


def session_run_us(
    sess: ort.InferenceSession,
    pixels: F32,
    batch_sizes: tuple[int, ...] = (1, 128),
    repeats: int = 200,
    max_seconds: float = 2.0,
) -> dict[str, float]:
    """Median ``session.run`` time in microseconds per batch size (after warm-up).

    Each size runs ``repeats`` times or for about ``max_seconds``, whichever ends first (with at
    least 10 runs), so a slower model (the CNN at batch 128) does not stretch a training run.
    """
    name = sess.get_inputs()[0].name
    result: dict[str, float] = {}
    for size in batch_sizes:
        feed = {name: pixels[:size]}
        for _ in range(10):
            sess.run(None, feed)
        times: list[float] = []
        deadline = time.perf_counter() + max_seconds
        while len(times) < repeats and (len(times) < 10 or time.perf_counter() < deadline):
            start = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - start)
        result[f"batch_{size}"] = round(float(np.median(times)) * 1e6, 1)
    return result
