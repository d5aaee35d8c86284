"""The adaptive micro-batcher: requests wait here, rows are computed together.

Design (docs/serving.md, "Batching policy"):

* Requests are validated NumPy arrays ``(rows, features)``; the queue is bounded in ROWS.
* ONE long-lived task forms batches. It first waits for a free inference slot, THEN takes
  everything queued (up to ``max_batch_size`` rows, at least one request), so a request reaching
  an idle service is computed at once, and under load the next batch forms for free while the
  previous one computes. ``max_batch_delay_ms`` only caps EXTRA waiting, applied when the
  service is busy (requests arrived while the previous batch computed) and the batch is not
  full: the batch is held open until its oldest request has waited that long.
* Inference runs on a dedicated executor (one thread per concurrent batch): one thread hop per
  batch, never per request. onnxruntime releases the GIL, so the event loop keeps serving.
* Except a small request reaching an idle batcher (``inline_max_rows``): it is computed at once
  in ``submit``, on the event loop, as a one-request batch (same hooks, counters and meter). A
  lone request would otherwise pay a task wake-up and a thread hop, which cost more than its
  ``session.run``. At most one request per loop iteration goes this way, so requests that
  arrive together still batch; and only while the last batch that small computed within
  ``INLINE_MAX_COMPUTE_S``, so a slow model never holds the event loop.
* A request whose deadline passed, or whose client went away, is skipped and never computed.
* A failing batch is retried request by request, so only the request that really fails gets an
  :class:`InferenceError`; the loop itself never dies on an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.batching.hooks import BatchObserver, NullObserver
from serving.batching.merge import merge, split
from serving.batching.request import Array, Outputs, QueuedRequest
from serving.batching.throughput import ThroughputMeter

logger = logging.getLogger(__name__)

PredictFn = Callable[[Array], Outputs]

#: Longest measured compute of a small batch for the next one to run on the event loop. Every
#: request arriving meanwhile waits for it, so it stays a few thread hops' worth: enough margin
#: for a few-row MLP on a busy CPU, far below a slow model's milliseconds.
INLINE_MAX_COMPUTE_S = 0.5e-3


class BatcherError(Exception):
    """Base of the outcomes a request can get instead of a result."""


class QueueFullError(BatcherError):
    """The queue holds ``max_queue_size`` rows already: retry later (503)."""


class DrainingError(BatcherError):
    """The service is shutting down and accepts no new work (503)."""


class DeadlineExceededError(BatcherError):
    """The request's deadline passed before its result was ready (504)."""


class InferenceError(BatcherError):
    """onnxruntime failed on this request (500)."""


class Batcher:
    """Queue + batch-forming task + inference executor. Create, ``await start()``, ``submit``."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_batch_delay_ms: float,
        max_queue_size: int,
        max_concurrent_batches: int = 1,
        inline_max_rows: int = 0,
        observer: BatchObserver | None = None,
        batch_ids: Iterator[int] | None = None,
        model_version: str = "",
    ) -> None:
        """``batch_ids``: share one counter between batchers reporting to the same observer,
        so batch ids (which key its batch spans) stay unique. ``model_version`` is handed to
        the observer on every queued request. ``inline_max_rows``: the largest request computed
        inline when the batcher is idle (0: never)."""
        self.model_version = model_version
        self._inline_max_rows = inline_max_rows
        self._inlined_this_tick = False
        # Unknown until a small batch was timed: the first one takes the thread.
        self._inline_is_cheap = False
        self._predict = self._own_predict = predict
        self._max_batch = max_batch_size
        self._max_delay = max_batch_delay_ms / 1000.0
        self._max_queue = max_queue_size
        self._concurrency = max_concurrent_batches
        self._observer: BatchObserver = observer if observer is not None else NullObserver()
        self._own_observer = self._observer
        self._queue: deque[QueuedRequest] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._rows_in_flight = 0
        self._draining = False
        self._batch_ids = batch_ids if batch_ids is not None else itertools.count(1)
        self._busy = False
        #: The measured service rate that admission estimates waits from.
        self.throughput = ThroughputMeter()
        self._loop_task: asyncio.Task[None] | None = None
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        # Created in start(): asyncio primitives belong to the running loop.
        self._wakeup: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ state
    @property
    def queued_rows(self) -> int:
        """Rows waiting (including requests already abandoned, until the loop drops them)."""
        return self._queued_rows

    @property
    def rows_in_flight(self) -> int:
        """Rows of the batches computing now (ahead of everything queued)."""
        return self._rows_in_flight

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    def attach(self, predict: PredictFn | None, observer: BatchObserver | None) -> None:
        """Compute the next batches with ``predict`` and report them to ``observer``; None
        restores what the batcher was built with. A rollout attaches here while it runs (a
        second version computed in the same inference-thread hop, and the observer that records
        the pair: serving/rollout_service.py); without one nothing per batch changes."""
        self._predict = predict if predict is not None else self._own_predict
        self._observer = observer if observer is not None else self._own_observer

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Create the executor and the batch-forming task (on the running loop)."""
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._slots = asyncio.Semaphore(self._concurrency)
        self._executor = ThreadPoolExecutor(
            max_workers=self._concurrency, thread_name_prefix="inference"
        )
        self._loop_task = self._loop.create_task(self._run(), name="batcher")

    async def warm_up(self, sizes: Sequence[int], features: int) -> None:
        """Run the model once per batch size on the inference thread(s), unobserved.

        The first runs of a session allocate and plan; doing it here keeps that cost out of the
        first real requests' latency.
        """
        assert self._loop is not None
        for size in sizes:
            inputs = np.zeros((size, features), dtype=np.float32)
            await self._loop.run_in_executor(self._executor, self._timed_predict, inputs)

    def begin_drain(self) -> None:
        """Refuse new requests from now on; queued and in-flight ones are still answered."""
        self._draining = True

    async def wait_idle(self) -> None:
        """Return once nothing is queued and no batch is computing."""
        if self._idle is None:
            return
        while self._queue or self._in_flight:
            self._idle.clear()
            await self._idle.wait()

    async def stop(self) -> None:
        """Stop the task, finish in-flight batches, fail whatever is still queued, free threads."""
        self._draining = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._batch_tasks:
            await asyncio.gather(*self._batch_tasks, return_exceptions=True)
        while self._queue:
            request = self._queue.popleft()
            if not request.future.done():
                request.future.set_exception(
                    DrainingError("the service stopped before computing it")
                )
        self._queued_rows = 0
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ request side
    async def submit(self, pixels: Array, deadline: float) -> Outputs:
        """Queue ``pixels`` (rows, features) and wait for its ``(rows, outputs)`` result.

        ``deadline`` is a ``time.monotonic()`` instant. Raises :class:`QueueFullError`,
        :class:`DrainingError`, :class:`DeadlineExceededError` or :class:`InferenceError`.
        Cancelling the awaiting task (client gone) drops the request without computing it.
        """
        loop = self._loop
        if loop is None or self._wakeup is None or self._idle is None:
            raise RuntimeError("Batcher.submit() before start()")
        rows = int(pixels.shape[0])
        if self._draining:
            self._observer.on_rejected("draining", rows)
            raise DrainingError("the service is shutting down")
        if self._queued_rows + rows > self._max_queue:
            self._observer.on_rejected("queue_full", rows)
            raise QueueFullError(
                f"queue full ({self._queued_rows} of {self._max_queue} rows waiting); retry later"
            )
        now = time.monotonic()
        if deadline <= now:
            self._observer.on_rejected("deadline", rows)
            raise DeadlineExceededError("the request deadline passed before it was queued")
        future: asyncio.Future[Outputs] = loop.create_future()
        request = QueuedRequest(pixels, rows, now, deadline, future, None, self.model_version)
        if (
            rows <= self._inline_max_rows
            and not self._queue
            and not self._in_flight
            and not self._inlined_this_tick
            and self._inline_is_cheap
        ):
            return await self._compute_inline(request, loop)
        self._observer.on_enqueued(request)
        self._queue.append(request)
        self._queued_rows += rows
        self._idle.clear()
        self._wakeup.set()
        timer = loop.call_later(deadline - now, self._expire, request)
        try:
            return await future
        finally:
            timer.cancel()

    async def _compute_inline(
        self, request: QueuedRequest, loop: asyncio.AbstractEventLoop
    ) -> Outputs:
        """Compute ``request`` now, on the event loop, observed as a one-request batch.

        Never suspends (``_compute`` runs the model inline), so nothing else runs meanwhile:
        the batcher stays idle to every other reader, and ``wait_idle`` is unaffected.
        """
        self._inlined_this_tick = True
        loop.call_soon(self._end_inline_tick)
        self._observer.on_enqueued(request)
        self._in_flight += 1
        self._rows_in_flight += request.rows
        try:
            outputs = await self._compute((request,), inline=True)
        except Exception as exc:  # observer bug: answered like the normal path's
            logger.exception("batcher: unexpected error finishing a batch")
            outputs = exc
        finally:
            finished = time.monotonic()
            self.throughput.record(request.enqueued_at, finished, False)
            self._rows_in_flight -= request.rows
            self._in_flight -= 1
        if isinstance(outputs, BaseException):
            raise _inference_error(outputs)
        if request.deadline <= finished:
            self._observer.on_rejected("deadline", request.rows, request)
            raise DeadlineExceededError("the request deadline passed before its result was ready")
        return outputs

    def _end_inline_tick(self) -> None:
        self._inlined_this_tick = False

    def _expire(self, request: QueuedRequest) -> None:
        if not request.future.done():
            request.future.set_exception(
                DeadlineExceededError("the request deadline passed before its result was ready")
            )
            self._observer.on_rejected("deadline", request.rows, request)

    # ------------------------------------------------------------------ batch side
    async def _run(self) -> None:
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                self._update_idle()
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._execute(batch))
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_tasks.discard)

    async def _next_batch(self) -> list[QueuedRequest]:
        """Wait for work, hold the batch open if busy, take it. Never raises but CancelledError."""
        assert self._wakeup is not None
        try:
            if not self._queue:
                self._busy = False  # idle: the next request is dispatched the moment it arrives
                while not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
            elif self._busy and self._max_delay > 0:
                await self._hold_open()
            return self._take()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("batcher: error while forming a batch (the loop keeps serving)")
            return []

    async def _hold_open(self) -> None:
        """Wait until the batch is full or its oldest request is ``max_batch_delay_ms`` old."""
        assert self._wakeup is not None
        until = self._queue[0].enqueued_at + self._max_delay
        while self._queued_rows < self._max_batch:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    def _take(self) -> list[QueuedRequest]:
        """Pop up to ``max_batch_size`` rows of live requests (at least one request)."""
        batch: list[QueuedRequest] = []
        rows = 0
        now = time.monotonic()
        queue = self._queue
        while queue:
            request = queue[0]
            if request.future.done():  # client cancelled, or its deadline timer answered it
                queue.popleft()
                self._queued_rows -= request.rows
                if request.future.cancelled():
                    self._observer.on_rejected("cancelled", request.rows, request)
                continue
            if request.deadline <= now:
                queue.popleft()
                self._queued_rows -= request.rows
                self._expire(request)
                continue
            if batch and rows + request.rows > self._max_batch:
                break
            queue.popleft()
            self._queued_rows -= request.rows
            batch.append(request)
            rows += request.rows
            if rows >= self._max_batch:
                break
        return batch

    async def _execute(self, batch: list[QueuedRequest]) -> None:
        assert self._slots is not None
        taken_at = time.monotonic()
        rows = sum(r.rows for r in batch)
        self._rows_in_flight += rows
        try:
            outputs = await self._compute(batch)
            if isinstance(outputs, BaseException):
                await self._isolate(batch, outputs)
            else:
                for request, result in zip(
                    batch, split(outputs, [r.rows for r in batch]), strict=True
                ):
                    if not request.future.done():
                        request.future.set_result(result)
        except Exception as exc:  # observer or bookkeeping bug: answer, never strand a request
            logger.exception("batcher: unexpected error finishing a batch")
            for request in batch:
                _fail(request, exc)
        finally:
            # Busy = requests arrived while this batch computed. Checked before the waiting
            # clients' tasks run, so a client that sends its next request only after getting
            # its answer (sequential traffic) never counts as load and never waits.
            self._busy = bool(self._queue)
            self.throughput.record(taken_at, time.monotonic(), self._busy)
            self._rows_in_flight -= rows
            self._in_flight -= 1
            self._slots.release()
            self._update_idle()

    async def _compute(
        self, batch: Sequence[QueuedRequest], inline: bool = False
    ) -> Outputs | Exception:
        """Run one batch on the executor (``inline``: on the calling thread); the exception if
        onnxruntime raised (observed)."""
        assert self._loop is not None
        batch_id = next(self._batch_ids)
        rows = sum(r.rows for r in batch)
        inputs = merge([r.pixels for r in batch])
        self._observer.on_batch_start(batch_id, batch, rows)
        started = time.perf_counter()
        try:
            if inline:
                outputs, seconds = self._timed_predict(inputs)
            else:
                outputs, seconds = await self._loop.run_in_executor(
                    self._executor, self._timed_predict, inputs
                )
        except Exception as exc:
            logger.warning("batcher: batch %d (%d rows) failed: %r", batch_id, rows, exc)
            self._observer.on_batch_end(
                batch_id, batch, inputs, None, exc, time.perf_counter() - started
            )
            return exc
        self._observer.on_batch_end(batch_id, batch, inputs, outputs, None, seconds)
        if rows <= self._inline_max_rows:
            self._inline_is_cheap = seconds <= INLINE_MAX_COMPUTE_S
        return outputs

    async def _isolate(self, batch: list[QueuedRequest], error: Exception) -> None:
        """After a failed batch, compute each request alone so only the culprit fails."""
        if len(batch) == 1:
            _fail(batch[0], error)
            return
        for request in batch:
            if request.future.done():
                continue
            outputs = await self._compute([request])
            if request.future.done():
                continue
            if isinstance(outputs, BaseException):
                _fail(request, outputs)
            else:
                request.future.set_result(outputs)

    def _timed_predict(self, inputs: Array) -> tuple[Outputs, float]:
        """Runs in the inference thread: the compute time excludes the thread hop."""
        started = time.perf_counter()
        outputs = self._predict(inputs)
        seconds = time.perf_counter() - started
        if outputs.rows != inputs.shape[0]:
            raise RuntimeError(f"model returned {outputs.rows} rows for {inputs.shape[0]}")
        return outputs, seconds

    def _update_idle(self) -> None:
        if self._idle is not None and not self._queue and not self._in_flight:
            self._idle.set()


def _fail(request: QueuedRequest, error: BaseException | None) -> None:
    if not request.future.done():
        request.future.set_exception(_inference_error(error))


def _inference_error(error: BaseException | None) -> InferenceError:
    """What the client is told: the cause's type and first line, bounded."""
    if error is None:
        return InferenceError("inference failed: unknown")
    first_line = next(iter(str(error).splitlines()), "")[:300]
    return InferenceError(f"inference failed: {type(error).__name__}: {first_line}")
