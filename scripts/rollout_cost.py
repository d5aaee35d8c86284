"""The compute cost of shadowing: one batch computed by stable alone, and by stable with the
candidate behind it in the same hop (``SecondPredict``, as a shadow rollout runs it).

    .venv/bin/python scripts/rollout_cost.py MODEL_REPOSITORY STABLE CANDIDATE

Both versions load as the service loads them (settings' onnxruntime threads, the fp32 file);
the batches are real MNIST-like rows of zeros and noise (compute does not depend on values).
Prints the median microseconds per batch over many repetitions, per batch size.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from serving.model import load_model
from serving.rollout_service import SecondPredict
from serving.settings import Settings

SIZES = (1, 8, 32, 64)
REPEATS = 400


def median_us(predict: object, batch: np.ndarray) -> float:
    assert callable(predict)
    for _ in range(20):  # warm-up: the session's first runs allocate
        predict(batch)
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def main(root: str, stable: str, candidate: str) -> None:
    base = Settings(model_repository=Path(root))
    first = load_model(base.model_copy(update={"model_version": int(stable)}))
    second = load_model(base.model_copy(update={"model_version": int(candidate)}))
    shadowed = SecondPredict(first, second, 1.0)
    rng = np.random.default_rng(0)
    print("rows | stable alone (µs) | stable + candidate (µs) | candidate's share (µs)")
    for rows in SIZES:
        batch = rng.random((rows, first.num_features), dtype=np.float32)
        alone = median_us(first.predict, batch)
        both = median_us(shadowed, batch)
        print(f"{rows} | {alone:.0f} | {both:.0f} | {both - alone:.0f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
