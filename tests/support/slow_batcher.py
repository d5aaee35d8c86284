"""A real Batcher whose model call can be held or slowed: later requests queue behind a batch
that is computing.

``hold``: while it is closed, every batch waits inside the model call (on the inference thread)
and ``hold.entered`` is set; a test sees that a batch is computing, queues what it wants behind
it, then releases it. No sleeping "long enough" for a batch to have started, so no timing
assumptions. ``delay_s``: a fixed extra time per batch, for tests where a duration matters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from serving.batching import BatchObserver, Outputs
from serving.batching.queue import Batcher
from tests.support.waiting import HANG_S

Array = npt.NDArray[np.float32]


class Hold:
    """Holds batches inside the model call while closed (open when made)."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        #: Set when a batch waits in the model call (cleared by :meth:`close`).
        self.entered = threading.Event()

    def close(self) -> None:
        self.entered.clear()
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait(self) -> None:
        """Called by the model: note the batch is here, wait while closed (bounded: a test that
        never releases fails instead of hanging)."""
        self.entered.set()
        assert self._open.wait(HANG_S), "the hold was never released"


def slow_batcher(
    predict: Callable[[Array], Array],
    delay_s: float,
    observer: BatchObserver,
    *,
    max_queue_size: int = 256,
    hold: Hold | None = None,
) -> Batcher:
    def slow_predict(batch: Array) -> Outputs:
        if hold is not None:
            hold.wait()
        time.sleep(delay_s)
        return Outputs.of(predict(batch))

    return Batcher(
        slow_predict,
        max_batch_size=64,
        max_batch_delay_ms=0,
        max_queue_size=max_queue_size,
        observer=observer,
    )
