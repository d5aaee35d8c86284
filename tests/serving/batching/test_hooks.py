"""The hook interface between the batcher and observability, as the batcher honours it: every
hook on the event loop's thread, ``on_enqueued`` in the submitting task (where the request's
span is current), the batch hooks in the batcher's own task, and ``on_rejected`` with the
queued request when there was one. ``NullObserver`` is the default and does nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from serving.batching import (
    Batcher,
    BatchObserver,
    DeadlineExceededError,
    NullObserver,
    Outputs,
    QueuedRequest,
    QueueFullError,
    RejectReason,
)
from tests.support.waiting import until

Array = npt.NDArray[np.float32]


class Where:
    """A BatchObserver that writes down, for each hook, the task and thread it ran in."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, asyncio.Task[Any] | None, int, Any]] = []

    def _note(self, hook: str, detail: Any = None) -> None:
        self.calls.append((hook, asyncio.current_task(), threading.get_ident(), detail))

    def on_enqueued(self, request: QueuedRequest) -> None:
        self._note("enqueued", request.rows)

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        self._note("start", rows)

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: Array,
        outputs: Outputs | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        self._note("end", (inputs.shape[0], None if outputs is None else outputs.rows, error))

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        self._note("rejected", (reason, rows, request))


def test_null_observer_takes_every_hook_as_the_batcher_calls_it() -> None:
    """The default observer: any hook, with the arguments the batcher passes, and no effect."""
    observer: BatchObserver = NullObserver()  # the Protocol: checked by mypy
    pixels = np.zeros((1, 4), np.float32)
    outputs = Outputs.of(pixels)

    async def main() -> Outputs:
        batcher = Batcher(lambda b: Outputs.of(b), max_batch_size=8, max_batch_delay_ms=0,
                          max_queue_size=8, observer=observer)  # fmt: skip
        await batcher.start()
        try:
            return await batcher.submit(pixels, time.monotonic() + 60)
        finally:
            await batcher.stop()

    observer.on_batch_start(1, [], 1)
    observer.on_batch_end(1, [], pixels, outputs, None, 0.0)
    observer.on_batch_end(1, [], pixels, None, RuntimeError("failed"), 0.0)
    observer.on_rejected("queue_full", 1)
    assert asyncio.run(main()).labels.tolist() == [0]


def test_each_hook_runs_on_the_loop_in_the_task_the_contract_names() -> None:
    observer = Where()
    gate = threading.Event()

    def predict(batch: Array) -> Outputs:
        assert gate.wait(timeout=60)
        return Outputs.of(batch)

    async def main() -> tuple[int, asyncio.Task[Any], asyncio.Task[Any], QueuedRequest]:
        batcher = Batcher(
            predict, max_batch_size=8, max_batch_delay_ms=0, max_queue_size=3, observer=observer
        )
        await batcher.start()
        pixels = np.full((2, 4), 0.5, np.float32)
        computing = asyncio.create_task(batcher.submit(pixels, time.monotonic() + 60), name="a")
        await until(lambda: any(c[0] == "start" for c in observer.calls))

        async def expire_soon() -> Outputs:
            # The deadline is taken as it is submitted: it cannot have passed before it queues.
            return await batcher.submit(pixels, time.monotonic() + 0.05)

        expiring = asyncio.create_task(expire_soon(), name="b")
        await until(lambda: batcher.queued_rows == 2)  # b queued (and stays counted, expired)
        with pytest.raises(QueueFullError):  # 2 queued + 2 > 3 rows
            await batcher.submit(pixels, time.monotonic() + 60)
        with pytest.raises(DeadlineExceededError):
            await expiring
        gate.set()
        await computing
        await batcher.stop()
        (expired,) = [c[3][2] for c in observer.calls if c[0] == "rejected" and c[3][2]]
        return threading.get_ident(), computing, expiring, expired

    loop_thread, computing, expiring, expired = asyncio.run(main())
    assert {thread for _, _, thread, _ in observer.calls} == {loop_thread}
    hooks = [(hook, detail) for hook, _, _, detail in observer.calls]
    assert hooks == [
        ("enqueued", 2),
        ("start", 2),
        ("enqueued", 2),
        ("rejected", ("queue_full", 2, None)),  # refused before queueing: no request
        ("rejected", ("deadline", 2, expired)),  # queued: its own request, to end its span
        ("end", (2, 2, None)),
    ]
    tasks = {hook: task for hook, task, _, _ in observer.calls if hook != "rejected"}
    enqueued = [task for hook, task, _, _ in observer.calls if hook == "enqueued"]
    assert enqueued == [computing, expiring]  # in the submitter's task: its span is current
    batch_task = tasks["start"]
    assert batch_task not in (computing, expiring, None)
    assert tasks["end"] is batch_task  # the batch hooks run in the batcher's own task
    assert expired.rows == 2
