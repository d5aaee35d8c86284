"""Everything the service observes with, built once from the settings BEFORE the parts it
observes, and handed to each of them by the app factory (serving/app.py): the one attach point.

``Observability`` owns the Prometheus registry and the TracerProvider (nothing global: many apps
can live in one process, as in tests) and exposes one observer per part:

* ``batches``: the batcher's ``BatchObserver`` (queue waits, batch spans, model quality, drift);
* ``models``: the versions' ``ModelEvents`` (``inference_model_info``, refusals);
* ``requests``: the pipeline's ``RequestObserver`` (HTTP metrics and the server span of a
  prediction);
* :meth:`wrap`: the ASGI wrapper of the Litestar routes (the same metrics and spans);
* :meth:`on_response`: the Litestar ``before_send`` callback that ends a request's observation;
* :meth:`on_feedback`: the feedback listener (feedback counters, live quality);
* ``rollout``: the rollout's ``RolloutEvents`` (decisions counted and traced, per-version
  gauges: serving/observability/rollout.py).

With metrics and tracing off every observer is a null one: the request path pays a no-op call.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry

from model_repository.layout import VARIANT_FILES
from model_repository.metadata import Metadata
from serving.batching import BatchObserver, NullObserver
from serving.feedback.loop import served_test_accuracy
from serving.feedback.store import Outcome, QualityStore
from serving.observability.drift import DriftMonitor
from serving.observability.inputs import InputMetrics
from serving.observability.metrics import ServingMetrics, render
from serving.observability.models import ModelMetricsEvents
from serving.observability.observer import TelemetryObserver
from serving.observability.otel_env import resolve_tracing
from serving.observability.quality import QualityMetrics, ServiceDrift
from serving.observability.requests import (
    AccessLog,
    HttpMetrics,
    ObservedRequests,
    PipelineRequests,
    ServerSpans,
)
from serving.observability.rollout import RolloutMetrics
from serving.observability.tracing import (
    BATCH_INSTRUMENTATION,
    HTTP_INSTRUMENTATION,
    BatchTracer,
    build_tracer_provider,
)
from serving.pipeline.hooks import NullRequestObserver, RequestObserver
from serving.settings import Settings
from serving.transport.loop_lag import LoopLag
from serving.versions import ModelEvents, NullModelEvents

if TYPE_CHECKING:
    from litestar.types import ASGIApp

METRICS_PATH = "/metrics"
#: The tracer of rollout decisions.
ROLLOUT_INSTRUMENTATION = "serving.rollout"
#: Longest wait at shutdown for the last spans to leave (a dead collector must not hang exit).
FLUSH_TIMEOUT_S = 2.0


def package_version() -> str:
    try:
        return importlib.metadata.version("mnist-inference")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Observability:
    """Traces, metrics, drift and live quality of one app. ``registry``/``span_processor`` are
    for tests (a fresh registry, spans in memory)."""

    def __init__(
        self,
        settings: Settings,
        metadata: Metadata,
        *,
        registry: CollectorRegistry | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics: ServingMetrics | None = None
        self.drift: DriftMonitor | None = None
        self.quality: QualityMetrics | None = None
        self.inputs: InputMetrics | None = None
        self.service_drift: ServiceDrift | None = None
        self.tracer_provider: TracerProvider | None = None
        self._store: QualityStore | None = None
        self._loop_lag: LoopLag | None = None
        self._queued_rows: Callable[[], int] | None = None
        self._held: Callable[[], int] | None = None
        self._local_counts: npt.NDArray[np.int64] | None = None
        self._sampler: asyncio.Task[None] | None = None
        model_version = str(metadata.version)
        self.metrics = (
            self._build_metrics(settings, metadata, model_version)
            if settings.metrics_enabled
            else None
        )
        otel = resolve_tracing(settings)
        tracer: BatchTracer | None = None
        spans: ServerSpans | None = None
        if otel.enabled:
            self.tracer_provider = build_tracer_provider(
                service_name=otel.service_name,
                service_version=package_version(),
                processor=span_processor,
                protocol=settings.otlp_protocol,
            )
            tracer = BatchTracer(
                self.tracer_provider.get_tracer(BATCH_INSTRUMENTATION),
                metadata.name,
                model_version,
            )
            spans = ServerSpans(
                self.tracer_provider.get_tracer(HTTP_INSTRUMENTATION), otel.sample_ratio
            )
        self.http: HttpMetrics | None = None
        if self.metrics is not None:
            self.http = HttpMetrics(self.metrics, skip_paths=frozenset({METRICS_PATH}))
        self.observer = TelemetryObserver(
            metrics=self.metrics,
            drift=self.drift,
            tracer=tracer,
            low_confidence_threshold=settings.low_confidence_threshold,
            predictions=self.service_drift.predictions if self.service_drift else None,
        )
        self.enabled = self.metrics is not None or self.tracer_provider is not None
        self.batches: BatchObserver = self.observer if self.enabled else NullObserver()
        self.models: ModelEvents = (
            ModelMetricsEvents(self.metrics) if self.metrics is not None else NullModelEvents()
        )
        access_log = AccessLog() if settings.access_log else None
        self.requests: RequestObserver
        if self.enabled or access_log is not None:
            self.requests = PipelineRequests(self.http, spans, self.inputs, access_log)
        else:
            self.requests = NullRequestObserver()
        self._observed = ObservedRequests(self.http, spans, access_log)
        self.enabled = self.enabled or access_log is not None
        self.rollout = RolloutMetrics(
            self.registry if self.metrics is not None else None,
            self.tracer_provider.get_tracer(ROLLOUT_INSTRUMENTATION)
            if self.tracer_provider is not None
            else None,
        )

    def _build_metrics(
        self, settings: Settings, metadata: Metadata, version: str
    ) -> ServingMetrics:
        """The metrics, and the drift, quality and input figures that feed them."""
        metrics = ServingMetrics(self.registry, metadata.labels)
        file_info = metadata.files.get(VARIANT_FILES[settings.model_variant])
        metrics.set_model(
            metadata.name,
            version,
            settings.model_variant,
            file_info.sha256 if file_info else "",
        )
        self.inputs = InputMetrics(self.registry)
        self.drift = DriftMonitor(
            metadata.training_stats,
            settings.drift_window,
            registry=self.registry,
            on_features=self.inputs.observe,
        )
        accuracy = served_test_accuracy(metadata.test_accuracy, settings.model_variant)
        self.quality = QualityMetrics(self.registry, metadata.labels, accuracy)
        self.service_drift = ServiceDrift(
            self.registry,
            self.drift,
            settings.drift_window,
            len(metadata.labels),
            metadata.prediction_reference,
        )
        return metrics

    # ------------------------------------------------------------------ attach points
    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` (the Litestar routes) observed per request: HTTP metrics and server spans."""
        if not self.enabled:
            return app
        self._observed.app = app
        return self._observed

    def on_response(self, message: Any, scope: Any) -> None:
        """The Litestar ``before_send`` callback: a response's status and its end."""
        self._observed.on_message(message, scope)

    def on_keys_refused(self, reason: str) -> None:
        """A keys-file reload was refused (``unreadable``, ``invalid``): count it."""
        if self.metrics is not None:
            self.metrics.keys_refused.labels(reason).inc()

    def on_feedback(self, outcome: Outcome) -> None:
        if self.quality is not None:
            self.quality.on_feedback(outcome)

    def bind_held(self, held: Callable[[], int]) -> None:
        """Connections the transport holds now (backpressure), for the sampled gauge."""
        self._held = held

    def bind(self, queued_rows: Callable[[], int], loop_lag: LoopLag, store: QualityStore) -> None:
        """What the sampler reads from the service and the shared feedback store."""
        self._queued_rows = queued_rows
        self.observer.watch_queue(queued_rows)
        self._loop_lag = loop_lag
        self._store = store

    # ------------------------------------------------------------------ sampling
    async def start(self) -> None:
        """Start the per-worker sampler (metrics on)."""
        if self.metrics is not None and self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_forever(), name="metrics-sampler")

    async def _sample_forever(self) -> None:
        while True:
            self.sample()
            await anyio.to_thread.run_sync(self.publish_shared)
            await asyncio.sleep(self.settings.metrics_sample_interval_s)

    async def scrape(self) -> bytes:
        """Flush and sample this worker (on the event loop, where the buffers are written),
        then render in a thread (it reads files with workers > 1)."""
        self.sample()
        return await anyio.to_thread.run_sync(self._publish_and_render)

    def _publish_and_render(self) -> bytes:
        self.publish_shared()
        return render(self.registry)

    def publish_shared(self) -> None:
        """The whole service's drift and quality gauges, from the shared store (in a thread:
        the store may wait on another worker's write)."""
        if self._store is None:
            return
        local = self._local_counts  # the latest sample's (rewriting it twice is harmless)
        if self.service_drift is not None and local is not None:
            self.service_drift.publish(self._store, local)
        if self.quality is not None:
            self.quality.publish(self._store)

    def sample(self) -> None:
        """Write the buffered HTTP and batch observations and refresh the sampled gauges (CPU,
        memory, in-flight, queue depth, drift). Runs on the event loop."""
        if self.metrics is not None:
            self.metrics.refresh_process()
            if self._loop_lag is not None:
                self.metrics.loop_lag.set(self._loop_lag.standing_s)
            if self._held is not None:
                self.metrics.held.set(self._held())
        if self.http is not None:
            self.http.publish()
        self.observer.flush()
        if self._store is not None and self.service_drift is not None:
            self._local_counts = self.service_drift.local_counts()  # shared by publish_shared
        elif self.drift is not None:
            self.drift.publish()

    async def stop(self) -> None:
        """Stop the sampler and flush the last spans, waiting at most FLUSH_TIMEOUT_S."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
            self.sample()  # the last observations reach the registry (and a final scrape)
            self.publish_shared()
        await asyncio.get_running_loop().run_in_executor(None, self.shutdown_tracing)

    def shutdown_tracing(self) -> None:
        """Flush and close the TracerProvider (idempotent; bounded even with a dead collector)."""
        provider, self.tracer_provider = self.tracer_provider, None
        if provider is None:
            return
        # A daemon thread: with the collector down the exporter retries for up to its timeout;
        # shutdown must not wait that long, and must not keep the process alive.
        closer = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
        closer.start()
        closer.join(FLUSH_TIMEOUT_S)
