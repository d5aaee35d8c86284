"""The Batcher through its public API, with a fake model function where timing or failure must
be controlled (a legitimate double for the unit: the real model is covered in the API tests)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest

import serving.batching.queue as queue_module
from serving.batching import (
    Batcher,
    DeadlineExceededError,
    DrainingError,
    InferenceError,
    Outputs,
    QueuedRequest,
    QueueFullError,
    RejectReason,
)
from serving.batching.throughput import ThroughputMeter
from tests.support.waiting import HANG_S

Array = npt.NDArray[np.float32]
T = TypeVar("T")
FEATURES = 4
POISON = -1.0


class FakeModel:
    """Row-wise function (rows * 2) that records every batch and the thread that computed it;
    can be gated, slowed down or poisoned, and can run a probe while it computes."""

    def __init__(self) -> None:
        self.batches: list[Array] = []
        self.threads: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.delay_s = 0.0
        self.probe: Callable[[], object] | None = None
        self.probed: list[object] = []

    def __call__(self, batch: Array) -> Outputs:
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.gate.wait(timeout=HANG_S)  # only a guard: a test that never opens it fails
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.probe is not None:
            self.probed.append(self.probe())
        if (batch == POISON).any():
            raise RuntimeError("poisoned row")
        self.batches.append(batch.copy())
        return Outputs.of(batch * 2)

    @property
    def computed_rows(self) -> list[float]:
        return [float(v) for b in self.batches for v in b[:, 0]]


def rows(*values: float) -> Array:
    return np.repeat(np.array(values, dtype=np.float32)[:, None], FEATURES, axis=1)


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(main(), timeout=HANG_S))


def later(seconds: float = HANG_S) -> float:
    return time.monotonic() + seconds


def make(model: FakeModel, **overrides: float) -> Batcher:
    options: dict[str, float] = {
        "max_batch_size": 8,
        "max_batch_delay_ms": 1.0,
        "max_queue_size": 64,
    }
    options.update(overrides)
    return Batcher(
        model,
        max_batch_size=int(options["max_batch_size"]),
        max_batch_delay_ms=options["max_batch_delay_ms"],
        max_queue_size=int(options["max_queue_size"]),
    )


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a public counter (the batcher exposes no event for it; tests only)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.001)


def test_results_come_back_in_order_and_split_per_request() -> None:
    model = FakeModel()

    async def main() -> list[Outputs]:
        batcher = make(model)
        await batcher.start()
        model.gate.clear()  # hold the first batch so the others queue up and merge
        first = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        tasks = [
            asyncio.create_task(batcher.submit(rows(*range(10 * i + 1, 10 * i + 1 + i)), later()))
            for i in range(1, 4)
        ]
        await wait_until(lambda: batcher.queued_rows == 6)
        model.gate.set()
        results = await asyncio.gather(first, *tasks)
        await batcher.stop()
        return results

    results = run(main)
    assert [r.probabilities[:, 0].tolist() for r in results] == [
        [0.0],
        [22.0],
        [42.0, 44.0],
        [62.0, 64.0, 66.0],
    ]
    assert [len(b) for b in model.batches] == [1, 6]  # the three queued requests formed ONE batch


def test_batches_never_exceed_max_size_and_an_oversized_request_runs_alone() -> None:
    model = FakeModel()

    async def main() -> list[Outputs]:
        batcher = make(model, max_batch_size=4)
        await batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        big = asyncio.create_task(batcher.submit(rows(*range(1, 11)), later()))  # 10 > 4
        smalls = [asyncio.create_task(batcher.submit(rows(20 + i), later())) for i in range(6)]
        await wait_until(lambda: batcher.queued_rows == 16)
        model.gate.set()
        results = await asyncio.gather(blocker, big, *smalls)
        await batcher.stop()
        return results

    results = run(main)
    assert results[1].probabilities[:, 0].tolist() == [2.0 * v for v in range(1, 11)]
    assert [r.probabilities[0, 0] for r in results[2:]] == [2.0 * (20 + i) for i in range(6)]
    sizes = [len(b) for b in model.batches]
    assert sizes == [1, 10, 4, 2]  # the big request alone, then the smalls in batches of <= 4


def test_a_lone_request_at_idle_does_not_wait_for_the_batch_delay() -> None:
    model = FakeModel()

    async def main() -> float:
        batcher = make(model, max_batch_delay_ms=30_000.0)  # a huge cap: waiting would show
        await batcher.start()
        started = time.monotonic()
        for _ in range(5):
            await batcher.submit(rows(1), later())
        elapsed = time.monotonic() - started
        await batcher.stop()
        return elapsed

    # Five sequential requests, none held: one hold alone would take 30 s. The bound is far
    # from both that and what a busy machine needs for five tiny batches.
    assert run(main) < 10.0


def test_queue_full_is_refused_at_once() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = make(model, max_queue_size=4)
        await batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        queued = asyncio.create_task(batcher.submit(rows(1, 2, 3), later()))
        await wait_until(lambda: batcher.queued_rows == 3)
        with pytest.raises(QueueFullError):
            await batcher.submit(rows(4, 5), later())  # 3 + 2 > 4 rows
        model.gate.set()
        assert (await queued).probabilities[:, 0].tolist() == [2.0, 4.0, 6.0]
        await blocker
        await batcher.stop()

    run(main)
    assert 4.0 not in model.computed_rows


def test_a_request_past_its_deadline_is_answered_and_never_computed() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = make(model)
        await batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(7), time.monotonic() + 0.05)
        # Answered at its deadline, not after the batch ahead: that one is still held.
        assert model.batches == []
        model.gate.set()
        await blocker
        assert (await batcher.submit(rows(8), later())).probabilities[0, 0] == 16.0
        await batcher.stop()

    run(main)
    assert 7.0 not in model.computed_rows
    assert model.computed_rows == [0.0, 8.0]


def test_failure_is_isolated_to_the_poisoned_request_and_the_loop_keeps_serving() -> None:
    model = FakeModel()

    async def main() -> list[Outputs | BaseException]:
        batcher = make(model)
        await batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        mates = [
            asyncio.create_task(batcher.submit(rows(1), later())),
            asyncio.create_task(batcher.submit(rows(POISON), later())),
            asyncio.create_task(batcher.submit(rows(3, 4), later())),
        ]
        await wait_until(lambda: batcher.queued_rows == 4)
        model.gate.set()
        results: list[Outputs | BaseException] = list(
            await asyncio.gather(blocker, *mates, return_exceptions=True)
        )
        # The loop survived: later requests are served, a lone poisoned one fails alone.
        results.append(await batcher.submit(rows(5), later()))
        with pytest.raises(InferenceError, match="poisoned row"):
            await batcher.submit(rows(POISON), later())
        results.append(await batcher.submit(rows(6), later()))
        await batcher.stop()
        return results

    results = run(main)
    assert isinstance(results[2], InferenceError)
    values = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, Outputs) for r in values)
    assert [float(r.probabilities[0, 0]) for r in values if isinstance(r, Outputs)] == [
        0.0,
        2.0,
        6.0,
        10.0,
        12.0,
    ]


def test_a_cancelled_client_is_skipped_and_others_are_unaffected() -> None:
    model = FakeModel()

    async def main() -> list[Outputs]:
        batcher = make(model)
        await batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        gone = asyncio.create_task(batcher.submit(rows(9), later()))
        stays = asyncio.create_task(batcher.submit(rows(1), later()))
        await wait_until(lambda: batcher.queued_rows == 2)
        gone.cancel()  # what Litestar/uvicorn do to the handler task when the client disconnects
        model.gate.set()
        results = await asyncio.gather(blocker, stays)
        with pytest.raises(asyncio.CancelledError):
            await gone
        await batcher.stop()
        return list(results)

    results = run(main)
    assert [float(r.probabilities[0, 0]) for r in results] == [0.0, 2.0]
    assert 9.0 not in model.computed_rows


def test_draining_refuses_new_work_but_answers_queued_work() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = make(model)
        await batcher.start()
        model.gate.clear()
        blocker = asyncio.create_task(batcher.submit(rows(0), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        queued = asyncio.create_task(batcher.submit(rows(1), later()))
        await wait_until(lambda: batcher.queued_rows == 1)
        batcher.begin_drain()
        with pytest.raises(DrainingError):
            await batcher.submit(rows(2), later())
        idle = asyncio.create_task(batcher.wait_idle())
        await asyncio.sleep(0.01)
        assert not idle.done()  # still busy: the blocked batch and one queued request
        model.gate.set()
        await idle
        assert blocker.done()
        assert queued.done()
        assert (await queued).probabilities[0, 0] == 2.0
        await batcher.stop()

    run(main)


# ---------------------------------------------------------------------- inline fast path
class Recorder:
    """A BatchObserver that records its calls in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_enqueued(self, request: QueuedRequest) -> None:
        self.calls.append(("enqueued", request.rows))

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        self.calls.append(("start", batch_id, len(requests), rows))

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: Array,
        outputs: Outputs | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        self.calls.append(("end", batch_id, "error" if error else "ok"))

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        self.calls.append(("rejected", reason, rows))


class RecordingMeter(ThroughputMeter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[float, float, bool]] = []

    def record(self, taken_at: float, finished_at: float, backlog: bool) -> None:
        self.records.append((taken_at, finished_at, backlog))
        super().record(taken_at, finished_at, backlog)


@pytest.fixture
def cheap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every small batch counts as cheap enough to run inline. The real limit (0.5 ms) is a
    measured time: a busy machine can stretch the fake model's microseconds past it, and the
    fast path would then (rightly) turn itself off; these tests are about the path's rules."""
    monkeypatch.setattr(queue_module, "INLINE_MAX_COMPUTE_S", 10.0)


def make_inline(model: FakeModel, observer: Recorder | None = None) -> Batcher:
    """Requests of up to 2 rows may run inline; batch ids from 41 on."""
    batcher = Batcher(
        model,
        max_batch_size=8,
        max_batch_delay_ms=1.0,
        max_queue_size=64,
        inline_max_rows=2,
        observer=observer,
        batch_ids=itertools.count(41),
    )
    batcher.throughput = RecordingMeter()
    return batcher


@pytest.mark.usefixtures("cheap")
def test_a_small_request_at_idle_runs_on_the_event_loop_observed_as_a_batch() -> None:
    model, observer = FakeModel(), Recorder()

    async def main() -> tuple[int, list[Outputs], Batcher]:
        batcher = make_inline(model, observer)
        await batcher.start()
        model.probe = lambda: (batcher.rows_in_flight, batcher.queued_rows)
        results = [
            await batcher.submit(rows(1), later()),  # not yet timed: takes the thread
            await batcher.submit(rows(2, 3), later()),  # timed cheap, idle, 2 rows: inline
            await batcher.submit(rows(4, 5, 6), later()),  # 3 rows: the thread
        ]
        await asyncio.wait_for(batcher.wait_idle(), HANG_S)
        await batcher.stop()
        return threading.get_ident(), results, batcher

    loop_thread, results, batcher = run(main)
    firsts = [r.probabilities[:, 0].tolist() for r in results]
    assert firsts == [[2.0], [4.0, 6.0], [8.0, 10.0, 12.0]]
    assert [t == loop_thread for t in model.threads] == [False, True, False]
    assert model.probed == [(1, 0), (2, 0), (3, 0)]  # in flight while computing, inline too
    assert observer.calls == [
        ("enqueued", 1), ("start", 41, 1, 1), ("end", 41, "ok"),
        ("enqueued", 2), ("start", 42, 1, 2), ("end", 42, "ok"),
        ("enqueued", 3), ("start", 43, 1, 3), ("end", 43, "ok"),
    ]  # fmt: skip
    meter = batcher.throughput
    assert isinstance(meter, RecordingMeter)
    assert len(meter.records) == 3  # the inline batch fed admission's meter too
    assert all(taken <= finished and not backlog for taken, finished, backlog in meter.records)
    assert batcher.rows_in_flight == 0


@pytest.mark.usefixtures("cheap")
def test_requests_arriving_together_or_behind_a_batch_are_queued_and_batched() -> None:
    model = FakeModel()

    async def main() -> int:
        batcher = make_inline(model)
        await batcher.start()
        await batcher.submit(rows(0), later())  # times a small batch: inline from now on
        # Same loop iteration: the first runs inline, the other two wait for ONE batch.
        together = await asyncio.gather(*(batcher.submit(rows(v), later()) for v in (1, 2, 3)))
        assert [float(r.probabilities[0, 0]) for r in together] == [2.0, 4.0, 6.0]
        # A batch in flight: a small request queues behind it instead of running inline.
        model.gate.clear()
        model.entered.clear()
        blocker = asyncio.create_task(batcher.submit(rows(4, 5, 6), later()))
        assert await asyncio.to_thread(model.entered.wait, HANG_S)
        small = asyncio.create_task(batcher.submit(rows(7), later()))
        await wait_until(lambda: batcher.queued_rows == 1)
        model.gate.set()
        assert (await small).probabilities[0, 0] == 14.0
        await blocker
        idle = await batcher.submit(rows(8), later())  # idle again: inline
        assert idle.probabilities[0, 0] == 16.0
        await batcher.stop()
        return threading.get_ident()

    loop_thread = run(main)
    assert [len(b) for b in model.batches] == [1, 1, 2, 3, 1, 1]
    assert [t == loop_thread for t in model.threads] == [False, True, False, False, False, True]


@pytest.mark.usefixtures("cheap")
def test_an_inline_failure_is_an_inference_error_for_that_request_only() -> None:
    model, observer = FakeModel(), Recorder()

    async def main() -> tuple[int, Outputs]:
        batcher = make_inline(model, observer)
        await batcher.start()
        await batcher.submit(rows(0), later())
        with pytest.raises(InferenceError, match="RuntimeError: poisoned row"):
            await batcher.submit(rows(POISON), later())
        assert batcher.rows_in_flight == 0
        await asyncio.wait_for(batcher.wait_idle(), HANG_S)
        after = await batcher.submit(rows(5), later())
        await batcher.stop()
        return threading.get_ident(), after

    loop_thread, after = run(main)
    assert after.probabilities[0, 0] == 10.0
    assert [t == loop_thread for t in model.threads] == [False, True, True]
    assert observer.calls[3:] == [
        ("enqueued", 1), ("start", 42, 1, 1), ("end", 42, "error"),
        ("enqueued", 1), ("start", 43, 1, 1), ("end", 43, "ok"),
    ]  # fmt: skip


def test_a_slow_inline_compute_misses_its_deadline_and_turns_the_fast_path_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Limits a busy machine cannot blur: the first compute is far below 0.5 s, the slow one
    # sleeps past both it and the request's deadline (0.3 s: enough to be queued in time).
    monkeypatch.setattr(queue_module, "INLINE_MAX_COMPUTE_S", 0.5)
    model, observer = FakeModel(), Recorder()

    async def main() -> int:
        batcher = make_inline(model, observer)
        await batcher.start()
        await batcher.submit(rows(0), later())
        model.delay_s = 0.6  # slower than the deadline, and than the inline budget
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(rows(1), time.monotonic() + 0.3)
        assert (await batcher.submit(rows(2), later())).probabilities[0, 0] == 4.0
        await batcher.stop()
        return threading.get_ident()

    loop_thread = run(main)
    assert [t == loop_thread for t in model.threads] == [False, True, False]
    assert ("rejected", "deadline", 1) in observer.calls


def test_inline_max_rows_zero_never_computes_on_the_event_loop() -> None:
    model = FakeModel()

    async def main() -> int:
        batcher = make(model)  # inline_max_rows defaults to 0
        await batcher.start()
        for value in range(4):
            await batcher.submit(rows(value), later())
        await batcher.stop()
        return threading.get_ident()

    loop_thread = run(main)
    assert len(model.threads) == 4
    assert loop_thread not in model.threads
