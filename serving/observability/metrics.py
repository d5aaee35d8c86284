"""Prometheus metrics of the service: one object holding every metric, on an injectable registry.

Correct with several workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (see
:func:`prepare_multiprocess_dir`, called by the CLI before workers start) prometheus_client writes
each worker's values to memory-mapped files and :func:`render` aggregates them on every scrape.
Gauges therefore declare how workers combine (``livesum`` for queue depth, ``livemax`` for drift).
prometheus_client's ProcessCollector reads only the scraping process, so CPU and memory are
gauges each worker refreshes itself (:meth:`ServingMetrics.refresh_process`); network bytes belong
to the network namespace, read at scrape time (:mod:`serving.observability.network`).

Labels are bounded: route TEMPLATES (never raw paths), status codes, rejection reasons, the ten
class labels, the two drift features.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from serving.observability.network import NetworkCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "inference"
#: 0.25 ms .. 2.5 s: a small model answers in well under a millisecond when idle.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Observations a hot-path buffer holds before it writes them itself (a long sample interval
#: under heavy load); the plugin normally flushes every ``metrics_sample_interval_s``.
MAX_BUFFERED = 65536


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def prepare_multiprocess_dir(path: Path | None = None) -> Path | None:
    """Create an EMPTY multiprocess directory and export PROMETHEUS_MULTIPROC_DIR for workers.

    Call once in the parent process before workers are spawned (and before any metric exists
    in it). ``path`` defaults to the PROMETHEUS_MULTIPROC_DIR already set; with neither, nothing
    is done and ``None`` is returned (single-process mode). Stale files of a previous run would
    be summed into the new one, hence the cleaning.
    """
    if path is None:
        configured = os.environ.get(MULTIPROC_ENV)
        if not configured:
            return None
        path = Path(configured)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition for a scrape (aggregated over workers if multiprocess)."""
    if multiprocess_enabled():
        scrape_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(scrape_registry)  # type: ignore[no-untyped-call]
        scrape_registry.register(NetworkCollector())  # the namespace's, read once per scrape
        return generate_latest(scrape_registry)
    return generate_latest(registry)


def observe_many(histogram: Histogram, values: npt.NDArray[np.floating]) -> None:
    """Histogram.observe for a whole array at once (one bucket increment per bucket, not per row).

    prometheus_client has no bulk observe; this increments the same value cells ``observe``
    does (``tests/serving/observability/test_metrics.py`` checks the result is identical).
    """
    if values.size == 0:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:  # pragma: no cover - other versions
        for value in values.tolist():
            histogram.observe(value)
        return
    index = np.searchsorted(np.asarray(bounds), values, side="left")
    for bucket, count in enumerate(np.bincount(index, minlength=len(bounds)).tolist()):
        if count:
            buckets[bucket].inc(count)
    total.inc(float(values.sum()))


class BufferedHistogram:
    """Observations collected on the hot path, written to ``histogram`` by :meth:`flush`.

    ``add`` is a list append, where ``Histogram.observe`` takes a lock and walks the buckets in
    Python for every value; :func:`observe_many` then writes a whole interval in one pass. The
    plugin flushes on every scrape and every ``metrics_sample_interval_s``, so a scrape always
    sees everything that happened before it. Only the event loop thread may call these methods.
    Past ``MAX_BUFFERED`` values it flushes itself.
    """

    __slots__ = ("_values", "histogram")

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self._values: list[float] = []

    def add(self, value: float) -> None:
        self._values.append(value)
        if len(self._values) >= MAX_BUFFERED:
            self.flush()

    def extend(self, values: Sequence[float]) -> None:
        self._values.extend(values)
        if len(self._values) >= MAX_BUFFERED:
            self.flush()

    def flush(self) -> None:
        values, self._values = self._values, []
        if values:
            observe_many(self.histogram, np.asarray(values, dtype=np.float64))


class ServingMetrics:
    """Every metric of the service. Build one per app; pass a fresh registry in tests."""

    def __init__(self, registry: CollectorRegistry, labels: Sequence[str]) -> None:
        self.registry = registry
        self.labels = list(labels)
        r = registry
        # ---------------------------------------------------------------- HTTP
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "Requests by route template (a gRPC call: its method's path), status code (a gRPC "
            "status: its HTTP twin), API key name (anonymous without) and protocol (http, grpc).",
            ["route", "method", "status", "key", "protocol"], registry=r,
        )  # fmt: skip
        self.keys_refused = Counter(
            f"{PREFIX}_keys_reloads_refused",
            "Keys-file reloads refused (unreadable or invalid): the keys in force stayed.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.request_latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time from request start to the last response byte, by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_flight = Gauge(
            f"{PREFIX}_http_requests_in_flight", "HTTP requests being handled now.",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        # ---------------------------------------------------------------- batching
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds", "Time a request waited in the queue before its batch.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.inference_time = Histogram(
            f"{PREFIX}_batch_inference_seconds", "onnxruntime compute time of one batch.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size_rows", "Rows (images) per computed batch.",
            buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_requests = Histogram(
            f"{PREFIX}_batch_requests", "Requests merged into one computed batch.",
            buckets=BATCH_SIZE_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_errors = Counter(
            f"{PREFIX}_batch_errors", "Batches whose inference raised (their requests got 500).",
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth_rows", "Rows waiting in the queue now.",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.loop_lag = Gauge(
            f"{PREFIX}_event_loop_lag_seconds",
            "Standing event-loop lag (smallest of the last 5 samples, 10 ms apart), worst worker: "
            "a wait the queue does not see.",
            multiprocess_mode="livemax", registry=r,
        )  # fmt: skip
        self.held = Gauge(
            f"{PREFIX}_connections_held",
            "Connections not read now: the service holds all the work it can finish within the "
            "deadline, so their requests wait in the kernel (backpressure), summed over workers.",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            f"{PREFIX}_rejected_requests",
            "Requests refused or dropped: queue_full, draining, not_ready, overloaded (wait "
            "beyond deadline), infeasible (deadline below an idle request's time), deadline "
            "(timeout), cancelled (client gone).",
            ["reason"], registry=r,
        )  # fmt: skip
        # ---------------------------------------------------------------- model quality
        self.confidence = Histogram(
            f"{PREFIX}_prediction_confidence", "Top-1 probability of each prediction.",
            buckets=CONFIDENCE_BUCKETS, registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            f"{PREFIX}_predictions", "Predictions by predicted class.", ["label"], registry=r,
        )  # fmt: skip
        self.low_confidence = Counter(
            f"{PREFIX}_low_confidence_predictions",
            "Predictions whose top-1 probability is below the low_confidence_threshold setting.",
            registry=r,
        )  # fmt: skip
        self._label_children = [self.predictions.labels(label) for label in self.labels]
        # ---------------------------------------------------------------- model and process
        self.model_info = Gauge(
            f"{PREFIX}_model_info", "The served model (value 1); labels identify it.",
            ["name", "version", "variant", "sha256"], multiprocess_mode="livemax", registry=r,
        )  # fmt: skip
        self.model_refused = Counter(
            f"{PREFIX}_model_versions_refused",
            "Model versions refused at (re)load: corrupt or missing file, checksum mismatch, "
            "invalid metadata or a different IO contract; the served versions kept serving.",
            registry=r,
        )
        self.cpu_seconds = Gauge(
            f"{PREFIX}_process_cpu_seconds",
            "CPU seconds (user+system) used by the worker processes, summed over live workers.",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.resident_memory = Gauge(
            f"{PREFIX}_process_resident_memory_bytes",
            "Resident memory of the worker processes, summed over live workers.",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.workers = Gauge(
            f"{PREFIX}_workers", "Live worker processes.", multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.workers.set(1)
        self._process = psutil.Process()
        if not multiprocess_enabled():  # multiprocess: render() reads them per scrape
            registry.register(NetworkCollector())

    def set_model(
        self, name: str, version: str, variant: str, sha256: str, served: bool = True
    ) -> None:
        """Mark a version served (1) or retired (0) in ``model_info``."""
        self.model_info.labels(name, version, variant, sha256).set(1 if served else 0)

    def refresh_process(self) -> None:
        """Sample this worker's CPU and memory (each worker calls it; scrapes aggregate)."""
        with self._process.oneshot():
            times = self._process.cpu_times()
            self.cpu_seconds.set(times.user + times.system)
            self.resident_memory.set(self._process.memory_info().rss)

    def observe_outputs(
        self,
        labels: npt.NDArray[np.integer],
        confidences: npt.NDArray[np.floating],
        threshold: float,
    ) -> None:
        """Model-quality metrics of many predictions at once (the batcher's labels and
        confidences, one per row: no argmax here)."""
        if labels.shape[0] == 0:
            return
        observe_many(self.confidence, confidences)
        counts = np.bincount(labels, minlength=len(self._label_children))
        for child, count in zip(self._label_children, counts.tolist(), strict=False):
            if count:
                child.inc(count)
        low = int(np.count_nonzero(confidences < threshold))
        if low:
            self.low_confidence.inc(low)
