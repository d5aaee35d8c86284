"""``TelemetryObserver``, the batcher's hooks as metrics and drift: the hooks only record, a
flush (every scrape and sample) writes what they recorded, in bulk; outputs become prediction
counts, a failed batch an error count, only computed inputs feed drift; queue depth is read
from the batcher, not counted from hooks."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

import serving.observability.observer
from model_repository.metadata import Metadata
from serving.batching import Outputs, QueuedRequest
from serving.batching.queue import DeadlineExceededError, DrainingError, QueueFullError
from serving.observability.drift import DriftMonitor
from serving.observability.metrics import ServingMetrics
from serving.observability.observer import TelemetryObserver
from tests.support.slow_batcher import Hold, slow_batcher
from tests.support.waiting import until

Array = npt.NDArray[np.float32]
LABELS = [str(i) for i in range(10)]


def observer_on(
    registry: CollectorRegistry, drift: DriftMonitor | None = None, threshold: float = 0.5
) -> TelemetryObserver:
    return TelemetryObserver(
        metrics=ServingMetrics(registry, LABELS),
        drift=drift,
        tracer=None,
        low_confidence_threshold=threshold,
    )


def queued(rows: int, waited_s: float) -> QueuedRequest:
    """A request that waited ``waited_s`` (its future is never touched by the observer)."""
    now = time.monotonic()
    pixels = np.zeros((rows, 784), np.float32)
    return QueuedRequest(pixels, rows, now - waited_s, now + 1, cast(Any, None))


def ended(
    observer: TelemetryObserver,
    requests: list[QueuedRequest],
    result: Outputs | BaseException,
    seconds: float = 0.0,
    inputs: Array | None = None,
) -> None:
    """``on_batch_end`` of a batch of ``requests``: computed (Outputs) or failed."""
    rows = sum(r.rows for r in requests)
    pixels = inputs if inputs is not None else np.zeros((rows, 784), np.float32)
    if isinstance(result, Outputs):
        observer.on_batch_end(1, requests, pixels, result, None, seconds)
    else:
        observer.on_batch_end(1, requests, pixels, None, result, seconds)


def outputs(labels: list[int], confidence: float) -> Outputs:
    probabilities = np.full((len(labels), 10), (1 - confidence) / 9, np.float32)
    probabilities[np.arange(len(labels)), labels] = confidence
    return Outputs.of(probabilities)


def test_the_hooks_record_and_a_flush_writes(registry: CollectorRegistry) -> None:
    observer = observer_on(registry, threshold=0.5)
    value = registry.get_sample_value
    requests = [queued(2, waited_s=0.2), queued(1, waited_s=0.2)]
    observer.on_batch_start(1, requests, 3)
    ended(observer, requests, outputs([4, 4, 7], 0.9), 0.01)
    observer.on_batch_start(2, requests[:1], 2)
    ended(observer, requests[:1], outputs([1, 2], 0.3), 0.02)
    before_flush: list[float | None] = [
        value("inference_batch_size_rows_count"),
        value("inference_queue_wait_seconds_count"),
        value("inference_predictions_total", {"label": "4"}),
    ]
    observer.flush()
    assert before_flush == [0.0, 0.0, 0.0]  # nothing on the request path but appends
    assert value("inference_batch_size_rows_count") == 2
    assert value("inference_batch_size_rows_sum") == 5
    assert value("inference_batch_requests_sum") == 3
    assert value("inference_batch_inference_seconds_sum") == pytest.approx(0.03)
    assert value("inference_queue_wait_seconds_count") == 3
    waited = value("inference_queue_wait_seconds_sum")
    assert waited is not None
    assert waited >= 3 * 0.2
    counts = {i: value("inference_predictions_total", {"label": str(i)}) for i in (1, 2, 4, 7)}
    assert counts == {1: 1, 2: 1, 4: 2, 7: 1}
    assert value("inference_prediction_confidence_count") == 5
    assert value("inference_low_confidence_predictions_total") == 2  # the two at 0.3 < 0.5
    observer.flush()  # a second flush writes nothing twice
    assert value("inference_batch_size_rows_count") == 2


def test_a_failed_batch_counts_an_error_and_no_predictions(registry: CollectorRegistry) -> None:
    observer = observer_on(registry)
    requests = [queued(1, 0.0)]
    observer.on_batch_start(1, requests, 1)
    ended(observer, requests, RuntimeError("failed"), 0.01)
    observer.flush()
    value = registry.get_sample_value
    assert value("inference_batch_errors_total") == 1
    assert value("inference_batch_inference_seconds_count") == 1  # its time is still measured
    assert value("inference_prediction_confidence_count") == 0


def test_only_computed_inputs_feed_drift(registry: CollectorRegistry, metadata: Metadata) -> None:
    drift = DriftMonitor(metadata.training_stats, 100, registry=registry)
    observer = observer_on(registry, drift=drift)
    requests = [queued(3, 0.0)]
    inputs = np.full((3, 784), 0.2, np.float32)
    ended(observer, requests, outputs([0, 0, 0], 0.9), inputs=inputs)
    ended(observer, requests, RuntimeError("failed"), inputs=inputs)
    assert drift.publish().window_images == 3


def test_no_hook_keeps_a_batchs_arrays(registry: CollectorRegistry, metadata: Metadata) -> None:
    """Kept arrays cannot be freed when their request is answered, and the next request's
    arrays then land in cold memory: ~3 % of the c=1 latency (docs/decisions.md)."""
    drift = DriftMonitor(metadata.training_stats, 100, registry=registry)
    observer = observer_on(registry, drift=drift)
    requests = [queued(2, 0.0)]
    inputs = np.full((2, 784), 0.2, np.float32)
    result = outputs([3, 8], 0.9)
    watched = [weakref.ref(a) for a in (inputs, *result[:3])]
    observer.on_batch_start(1, requests, 2)
    ended(observer, requests, result, inputs=inputs)
    del inputs, result
    assert [ref() for ref in watched] == [None] * 4
    observer.flush()  # what the hooks recorded is all there
    value = registry.get_sample_value
    assert value("inference_predictions_total", {"label": "3"}) == 1
    assert value("inference_predictions_total", {"label": "8"}) == 1
    assert drift.publish().window_mean["mean_intensity"] == pytest.approx(0.2)


def test_a_long_interval_under_load_flushes_by_itself(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serving.observability.observer, "MAX_BUFFERED_BATCHES", 3)
    observer = observer_on(registry)
    requests = [queued(1, 0.0)]
    written = []
    for _ in range(3):
        ended(observer, requests, outputs([5], 0.9))
        written.append(registry.get_sample_value("inference_predictions_total", {"label": "5"}))
    assert written == [0, 0, 3]  # held until the buffer is full, then all at once


def test_without_metrics_or_drift_the_hooks_do_nothing_and_do_not_fail() -> None:
    observer = TelemetryObserver(
        metrics=None, drift=None, tracer=None, low_confidence_threshold=0.5
    )
    requests = [queued(1, 0.0)]
    observer.on_enqueued(requests[0])
    observer.on_batch_start(1, requests, 1)
    ended(observer, requests, outputs([1], 0.9))
    observer.on_rejected("queue_full", 1)
    observer.flush()
    assert requests[0].trace_context is None  # no tracer: no span started


# Moved from test_metrics.py; the batch is now held in compute by a Hold instead of a 50 ms
# model call and a 10 ms sleep (which raced on a loaded machine).
def test_rejections_by_reason_and_queue_depth(
    predict: Callable[[Array], Array], registry: CollectorRegistry
) -> None:
    metrics = ServingMetrics(registry, [str(i) for i in range(10)])
    observer = TelemetryObserver(
        metrics=metrics, drift=None, tracer=None, low_confidence_threshold=0.5
    )
    depth_while_computing: list[float | None] = []
    hold = Hold()

    async def scenario() -> None:
        batcher = slow_batcher(predict, 0.0, observer, max_queue_size=8, hold=hold)
        observer.watch_queue(lambda: batcher.queued_rows)
        await batcher.start()
        pixels = np.full((2, 784), 0.1, np.float32)
        soon = time.monotonic() + 60
        hold.close()
        first = asyncio.create_task(batcher.submit(pixels, soon))
        await until(hold.entered.is_set)  # computing: the next ones queue
        queued = [asyncio.create_task(batcher.submit(pixels, soon)) for _ in range(3)]
        await until(lambda: batcher.queued_rows == 6)
        observer.refresh_queue_depth()  # what /metrics and the periodic sampler do
        depth_while_computing.append(registry.get_sample_value("inference_queue_depth_rows"))
        with pytest.raises(QueueFullError):
            await batcher.submit(np.full((3, 784), 0.1, np.float32), soon)
        with pytest.raises(DeadlineExceededError):
            await batcher.submit(pixels, time.monotonic() - 1)
        hold.release()
        await asyncio.gather(first, *queued)
        batcher.begin_drain()
        with pytest.raises(DrainingError):
            await batcher.submit(pixels, soon)
        await batcher.stop()

    asyncio.run(scenario())
    value = registry.get_sample_value
    assert depth_while_computing == [6]
    assert value("inference_queue_depth_rows") == 0
    assert value("inference_rejected_requests_total", {"reason": "queue_full"}) == 1
    assert value("inference_rejected_requests_total", {"reason": "deadline"}) == 1
    assert value("inference_rejected_requests_total", {"reason": "draining"}) == 1
    assert value("inference_batch_size_rows_sum") == 0  # recorded by the hooks, not yet written
    observer.flush()  # what every scrape and the periodic sampler do
    assert value("inference_batch_size_rows_sum") == 8
    assert value("inference_batch_requests_sum") == 4
