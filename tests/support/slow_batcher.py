"""A real Batcher whose model call sleeps first: later requests queue behind a computing batch."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from serving.batching import BatchObserver, Outputs
from serving.batching.queue import Batcher

Array = npt.NDArray[np.float32]


def slow_batcher(
    predict: Callable[[Array], Array],
    delay_s: float,
    observer: BatchObserver,
    *,
    max_queue_size: int = 256,
) -> Batcher:
    def slow_predict(batch: Array) -> Outputs:
        time.sleep(delay_s)
        return Outputs.of(predict(batch))

    return Batcher(
        slow_predict,
        max_batch_size=64,
        max_batch_delay_ms=0,
        max_queue_size=max_queue_size,
        observer=observer,
    )
