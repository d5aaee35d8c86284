"""The batcher's observer: turns the four batching hooks into spans, metrics and drift updates.

Everything here runs on the event loop, so the hooks only RECORD: list appends of the queue
waits, batch sizes and compute times, and references to the batch's output array (model
quality) and input array (drift). :meth:`TelemetryObserver.flush`, called by the plugin on every
scrape and every ``metrics_sample_interval_s``, turns them into metric updates with a few
vectorized NumPy calls for the whole interval instead of per batch. The arrays are never written
after the batch (inputs are merged copies, outputs come fresh from onnxruntime), so keeping
references is safe; drift keeps at most its window's worth of rows. With tracing off the tracing
branches are a single ``is None`` check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from serving.batching.request import Outputs, QueuedRequest, RejectReason
from serving.observability.drift import DriftMonitor
from serving.observability.metrics import BufferedHistogram, ServingMetrics
from serving.observability.quality import PredictionWindow
from serving.observability.tracing import BatchTracer, sampled_traces

#: Batches recorded before a flush happens anyway (a long sample interval under heavy load).
MAX_BUFFERED_BATCHES = 4096


class TelemetryObserver:
    """Implements ``serving.batching.hooks.BatchObserver``.

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
        predictions: PredictionWindow | None = None,
    ) -> None:
        self.metrics = metrics
        self.predictions = predictions
        self.drift = drift
        self.tracer = tracer
        self._threshold = low_confidence_threshold
        self._queue_rows: Callable[[], int] | None = None
        self._outputs: list[Outputs] = []
        self._buffers: tuple[BufferedHistogram, ...] = ()
        if metrics is not None:
            self._queue_wait = BufferedHistogram(metrics.queue_wait)
            self._batch_rows = BufferedHistogram(metrics.batch_size)
            self._batch_requests = BufferedHistogram(metrics.batch_requests)
            self._inference_time = BufferedHistogram(metrics.inference_time)
            self._buffers = (
                self._queue_wait, self._batch_rows, self._batch_requests, self._inference_time
            )  # fmt: skip

    def watch_queue(self, queue_rows: Callable[[], int]) -> None:
        """Give the observer a way to read the rows waiting (the batcher's ``queued_rows``)."""
        self._queue_rows = queue_rows

    def refresh_queue_depth(self) -> None:
        if self.metrics is not None and self._queue_rows is not None:
            self.metrics.queue_depth.set(self._queue_rows())

    def flush(self) -> None:
        """Write everything recorded since the last flush to the metrics (on the event loop)."""
        for buffer in self._buffers:
            buffer.flush()
        outputs, self._outputs = self._outputs, []
        if self.metrics is not None and outputs:
            labels = np.concatenate([o.labels for o in outputs])
            confidences = np.concatenate([o.confidences for o in outputs])
            self.metrics.observe_outputs(labels, confidences, self._threshold)
            if self.predictions is not None:
                self.predictions.update(labels, confidences)
        self.refresh_queue_depth()

    # ------------------------------------------------------------------ hooks
    def on_enqueued(self, request: QueuedRequest) -> None:
        if self.tracer is not None:
            request.trace_context = self.tracer.start_queue_wait()
        # Queue depth is read from the batcher when flushed and per rejection, not per request.

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        if self.tracer is not None:
            traces = sampled_traces(r.trace_context for r in requests)
            version = requests[0].model_version if requests else ""
            self.tracer.start_batch(batch_id, traces, rows, len(requests), version)
        if self.metrics is None:
            return
        now = time.monotonic()
        self._queue_wait.extend([now - r.enqueued_at for r in requests])
        self._batch_rows.add(rows)
        self._batch_requests.add(len(requests))

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: npt.NDArray[np.float32],
        outputs: Outputs | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        if self.tracer is not None:
            self.tracer.end_batch(batch_id, error, compute_seconds)
        if self.metrics is not None:
            self._inference_time.add(compute_seconds)
            if error is not None:
                self.metrics.batch_errors.inc()
            elif outputs is not None:
                self._outputs.append(outputs)
                if len(self._outputs) >= MAX_BUFFERED_BATCHES:
                    self.flush()
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
