"""The batcher's observer: turns the four batching hooks into spans, metrics and drift updates.

Everything here runs on the event loop, so it is kept to a few vectorized NumPy calls and metric
increments per BATCH (model quality, drift, batch histograms) and one or two increments per
request (queue wait). With tracing off the tracing branches are a single ``is None`` check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from serving.observability.drift import DriftMonitor
from serving.observability.metrics import ServingMetrics, observe_many
from serving.observability.tracing import BatchTracer, sampled_traces

if TYPE_CHECKING:
    from serving.batching.observer import RejectReason
    from serving.batching.queue import QueuedRequest


class TelemetryObserver:
    """Implements ``serving.batching.observer.BatchObserver``.

    ``metrics``/``drift``/``tracer`` are each optional (switched off by settings). Queue depth is
    read from ``queue_rows`` (bind it with :meth:`watch_queue`, e.g. ``lambda:
    batcher.queued_rows``) rather than counted from the hooks: requests dropped on deadline or
    cancellation leave the queue without a hook telling how many rows were still queued.
    """

    def __init__(
        self,
        *,
        metrics: ServingMetrics | None,
        drift: DriftMonitor | None,
        tracer: BatchTracer | None,
        low_confidence_threshold: float,
    ) -> None:
        self.metrics = metrics
        self.drift = drift
        self.tracer = tracer
        self._threshold = low_confidence_threshold
        self._queue_rows: Callable[[], int] | None = None

    def watch_queue(self, queue_rows: Callable[[], int]) -> None:
        """Give the observer a way to read the rows waiting (the batcher's ``queued_rows``)."""
        self._queue_rows = queue_rows

    def refresh_queue_depth(self, pending: int = 0) -> None:
        if self.metrics is not None and self._queue_rows is not None:
            self.metrics.queue_depth.set(self._queue_rows() + pending)

    # ------------------------------------------------------------------ hooks
    def on_enqueued(self, request: QueuedRequest) -> None:
        if self.tracer is not None:
            request.trace_context = self.tracer.start_queue_wait()
        # Queue depth is refreshed per batch, per rejection and per scrape, not per request.

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        if self.tracer is not None:
            traces = sampled_traces(r.trace_context for r in requests)
            self.tracer.start_batch(batch_id, traces, rows, len(requests))
        metrics = self.metrics
        if metrics is None:
            return
        now = time.monotonic()
        observe_many(metrics.queue_wait, np.array([now - r.enqueued_at for r in requests]))
        metrics.batch_size.observe(rows)
        metrics.batch_requests.observe(len(requests))
        self.refresh_queue_depth()

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: npt.NDArray[np.float32],
        outputs: npt.NDArray[np.float32] | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        if self.tracer is not None:
            self.tracer.end_batch(batch_id, error, compute_seconds)
        if self.metrics is not None:
            self.metrics.inference_time.observe(compute_seconds)
            if error is not None:
                self.metrics.batch_errors.inc()
            elif outputs is not None:
                self.metrics.observe_outputs(outputs, self._threshold)
        if self.drift is not None and outputs is not None:
            self.drift.update(inputs)

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        if self.tracer is not None and request is not None:
            self.tracer.end_queue_wait(request.trace_context, reason)
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()
            self.refresh_queue_depth()
