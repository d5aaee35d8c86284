"""Where the service is observed: ``ObservabilityPlugin``, attached in ``on_app_init`` only.

According to the settings it adds one ASGI wrapper around the whole app (installed at startup)
that makes the server spans and the HTTP metrics; ``GET /metrics``; a background sampler of
process CPU/memory, in-flight, queue-depth and drift gauges; and it hands its batch observer to
the app's ``Service``. Nothing is global: the registry and the TracerProvider belong to this
plugin, so many apps can live in one process (tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import threading

import anyio
import numpy as np
import numpy.typing as npt
from litestar import Litestar, Response, get
from litestar.config.app import AppConfig
from litestar.handlers import HTTPRouteHandler
from litestar.plugins import InitPlugin
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry

from model_repository.layout import VARIANT_FILES
from model_repository.metadata import Metadata
from serving.api.response_hooks import ResponseHooks
from serving.feedback.loop import Feedback, served_test_accuracy
from serving.feedback.store import QualityStore
from serving.lifecycle import Service
from serving.observability.drift import DriftMonitor
from serving.observability.inputs import InputMetrics
from serving.observability.metrics import CONTENT_TYPE, ServingMetrics, render
from serving.observability.models import ModelMetricsEvents
from serving.observability.observer import TelemetryObserver
from serving.observability.otel_env import resolve_tracing
from serving.observability.quality import QualityMetrics, ServiceDrift
from serving.observability.requests import HttpMetrics, ObservedRequests, ServerSpans
from serving.observability.tracing import (
    BATCH_INSTRUMENTATION,
    HTTP_INSTRUMENTATION,
    BatchTracer,
    build_tracer_provider,
)
from serving.settings import Settings
from serving.transport.loop_lag import LoopLag

METRICS_PATH = "/metrics"
#: Longest wait at shutdown for the last spans to leave (a dead collector must not hang exit).
FLUSH_TIMEOUT_S = 2.0


def package_version() -> str:
    try:
        return importlib.metadata.version("mnist-inference")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class ObservabilityPlugin(InitPlugin):
    """Traces, metrics and drift for one app. ``registry``/``span_processor`` are for tests."""

    def __init__(
        self,
        settings: Settings,
        metadata: Metadata,
        *,
        registry: CollectorRegistry | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics: ServingMetrics | None = None
        self.drift: DriftMonitor | None = None
        self.quality: QualityMetrics | None = None
        self.inputs: InputMetrics | None = None
        self.service_drift: ServiceDrift | None = None
        self._store: QualityStore | None = None
        self._loop_lag: LoopLag | None = None
        self._local_counts: npt.NDArray[np.int64] | None = None
        self.tracer_provider: TracerProvider | None = None
        tracer: BatchTracer | None = None
        model_version = str(metadata.version)
        if settings.metrics_enabled:
            self.metrics = ServingMetrics(self.registry, metadata.labels)
            file_info = metadata.files.get(VARIANT_FILES[settings.model_variant])
            self.metrics.set_model(
                metadata.name,
                model_version,
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
        otel = resolve_tracing(settings)
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
        self.observer = TelemetryObserver(
            metrics=self.metrics,
            drift=self.drift,
            tracer=tracer,
            low_confidence_threshold=settings.low_confidence_threshold,
            predictions=self.service_drift.predictions if self.service_drift else None,
        )
        self.http: HttpMetrics | None = None
        if self.metrics is not None:
            self.http = HttpMetrics(self.metrics, skip_paths=frozenset({METRICS_PATH}))
        spans = None
        if self.tracer_provider is not None:
            spans = ServerSpans(
                self.tracer_provider.get_tracer(HTTP_INSTRUMENTATION),
                otel.sample_ratio,
            )
        self.requests = ObservedRequests(self.http, spans)
        self._wrapped = False
        self._sampler: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ Litestar wiring
    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """The one attach point: the service's batch observer, ``/metrics``, the response
        hook, and the request wrapper with the sampler at startup."""
        service: Service = app_config.state["service"]
        service.observe(self.observer)
        if self.metrics is not None:
            service.watch_models(ModelMetricsEvents(self.metrics))
        self.observer.watch_queue(service.queued_rows)
        self._loop_lag = service.loop_lag
        feedback = app_config.state.get("feedback")
        if isinstance(feedback, Feedback) and self.quality is not None:
            feedback.listeners.append(self.quality.on_feedback)
            self._store = feedback.store
        if self.metrics is not None:
            app_config.route_handlers.append(self._metrics_route())
        if self.inputs is not None:
            app_config.after_exception.append(self.inputs.on_exception)
        self._add_response_callback(app_config)
        app_config.on_startup.append(self.start)
        app_config.on_shutdown.append(self.stop)
        return app_config

    def _add_response_callback(self, app_config: AppConfig) -> None:
        """The wrapper's response side joins the app's ResponseHooks if it has one (one
        coroutine per message for all callbacks), else gets a ResponseHooks of its own."""
        for hook in app_config.before_send:
            if isinstance(hook, ResponseHooks):
                hook.callbacks.append(self.requests.on_message)
                return
        app_config.before_send.append(ResponseHooks(self.requests.on_message))

    def _metrics_route(self) -> HTTPRouteHandler:
        @get(METRICS_PATH, include_in_schema=False)
        async def scrape() -> Response[bytes]:
            """Prometheus scrape: flush and sample this worker (on the event loop, where the
            buffers are written), then render in a thread (it reads files with workers > 1)."""
            self.sample()
            body = await anyio.to_thread.run_sync(self._publish_and_render)
            return Response(body, media_type=CONTENT_TYPE)

        return scrape

    # ------------------------------------------------------------------ lifecycle
    async def start(self, app: Litestar) -> None:
        """Wrap the app in the one request observer (HTTP metrics, server spans) and start the
        per-worker sampler.

        At startup because the wrapper needs the app's finished ASGI handler, which Litestar
        builds after the plugins' ``on_app_init``; no request is served before startup ends.
        Once per app: a restarted app (e.g. a second TestClient) keeps its wrapper.
        """
        if not self._wrapped:
            self._wrapped = True
            self.requests.install(app)
        if self.metrics is not None and self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_forever(), name="metrics-sampler")

    async def _sample_forever(self) -> None:
        while True:
            self.sample()
            await anyio.to_thread.run_sync(self.publish_shared)
            await asyncio.sleep(self.settings.metrics_sample_interval_s)

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
