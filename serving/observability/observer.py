"""The batcher's observer: turns the four batching hooks into spans, metrics and drift updates.

Everything here runs on the event loop, so the hooks only RECORD: list appends of the queue
waits, batch sizes, compute times and each row's label and confidence (model quality), and a
copy of the inputs into drift's ring. :meth:`TelemetryObserver.flush`, called by the plugin on
every scrape and every ``metrics_sample_interval_s``, turns them into metric updates with a few
vectorized NumPy calls for the whole interval instead of per batch. No hook keeps a batch's
arrays: a request's arrays must be freed when it is answered, so the next one reuses their
warm memory (keeping references cost ~3 % of the c=1 latency: docs/decisions.md). With tracing
off the tracing branches are a single ``is None`` check.
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
        #: Each row's predicted label and confidence since the last flush, as Python numbers.
        self._labels: list[int] = []
        self._confidences: list[float] = []
        self._batches = 0
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
        recorded = self._labels, self._confidences
        self._labels, self._confidences, self._batches = [], [], 0
        if self.metrics is not None and recorded[0]:
            labels = np.asarray(recorded[0], dtype=np.int64)
            confidences = np.asarray(recorded[1], dtype=np.float64)
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
                self._labels += outputs.labels.tolist()
                self._confidences += outputs.confidences.tolist()
                self._batches += 1
                if self._batches >= MAX_BUFFERED_BATCHES:
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
