"""``Observability``, built once from the settings before the parts it observes: one observer
per part, all null ones when everything is off (the request path then pays a no-op call), the
served model in ``model_info`` from the start, and a tracing shutdown that never waits long for
a collector."""

from __future__ import annotations

import asyncio
import threading

from litestar.types import Receive, Scope, Send
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry

from model_repository.metadata import Metadata
from serving.batching import NullObserver
from serving.feedback.store import Labelled, Outcome
from serving.observability import Observability
from serving.observability.models import ModelMetricsEvents
from serving.observability.observer import TelemetryObserver
from serving.observability.requests import ObservedRequests, PipelineRequests
from serving.observability.telemetry import package_version
from serving.pipeline.hooks import NullRequestObserver
from serving.settings import Settings
from serving.versions import NullModelEvents


async def routes(scope: Scope, receive: Receive, send: Send) -> None:
    """Stands for the Litestar app that ``wrap`` observes."""


def test_with_everything_off_every_observer_is_a_null_one(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry
) -> None:
    off = settings.model_copy(update={"metrics_enabled": False, "tracing_enabled": False})
    observability = Observability(off, metadata, registry=registry)
    assert not observability.enabled
    assert isinstance(observability.batches, NullObserver)
    assert isinstance(observability.models, NullModelEvents)
    assert isinstance(observability.requests, NullRequestObserver)
    assert observability.wrap(routes) is routes  # not even a wrapper on the Litestar routes
    assert observability.metrics is None
    assert observability.tracer_provider is None
    assert list(registry.collect()) == []


def test_with_metrics_on_each_part_gets_its_observer(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry
) -> None:
    observability = Observability(settings, metadata, registry=registry)
    assert observability.enabled
    assert isinstance(observability.batches, TelemetryObserver)
    assert isinstance(observability.models, ModelMetricsEvents)
    assert isinstance(observability.requests, PipelineRequests)
    wrapped = observability.wrap(routes)
    assert isinstance(wrapped, ObservedRequests)
    assert wrapped.app is routes
    info = {
        "name": "mnist",
        "version": "1",
        "variant": "fp32",
        "sha256": metadata.files["model.onnx"].sha256,
    }
    assert registry.get_sample_value("inference_model_info", info) == 1  # before any load


def test_an_access_log_alone_observes_requests(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry
) -> None:
    logged = settings.model_copy(update={"metrics_enabled": False, "access_log": True})
    observability = Observability(logged, metadata, registry=registry)
    assert observability.enabled
    assert isinstance(observability.requests, PipelineRequests)
    assert isinstance(observability.batches, NullObserver)  # nothing to record per batch
    assert isinstance(observability.wrap(routes), ObservedRequests)


def test_refused_key_reloads_and_feedback_are_counted(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry
) -> None:
    observability = Observability(settings, metadata, registry=registry)
    observability.on_keys_refused("invalid")
    observability.on_keys_refused("invalid")
    observability.on_keys_refused("unreadable")
    accepted = [Labelled(b"t1", 1, 3, 3), Labelled(b"t2", 1, 4, 9)]
    observability.on_feedback(Outcome(accepted, duplicates=1, unknown=2))
    value = registry.get_sample_value
    assert value("inference_keys_reloads_refused_total", {"reason": "invalid"}) == 2
    assert value("inference_keys_reloads_refused_total", {"reason": "unreadable"}) == 1
    assert value("inference_feedback_total", {"outcome": "accepted"}) == 2
    assert value("inference_feedback_total", {"outcome": "duplicate"}) == 1


class Stuck(SpanProcessor):
    """A span processor whose shutdown waits until released: a collector that never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.finished = threading.Event()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        self.entered.set()
        self.release.wait(timeout=60)  # a guard: the daemon thread ends even if never released
        self.finished.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_tracing_shutdown_does_not_wait_for_a_collector_that_never_answers(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry
) -> None:
    stuck = Stuck()
    traced = settings.model_copy(update={"tracing_enabled": True})
    observability = Observability(traced, metadata, registry=registry, span_processor=stuck)

    def provider() -> TracerProvider | None:
        return observability.tracer_provider

    assert provider() is not None
    try:
        observability.shutdown_tracing()
        # Returned although the processor is still shutting down: the wait is bounded.
        assert stuck.entered.is_set()
        assert not stuck.finished.is_set()
        assert provider() is None
        observability.shutdown_tracing()  # idempotent: nothing left to close
    finally:
        stuck.release.set()


def test_the_sampler_starts_once_and_stop_leaves_everything_written(
    settings: Settings, metadata: Metadata, registry: CollectorRegistry
) -> None:
    observability = Observability(settings, metadata, registry=registry)
    observability.observer.on_batch_start(1, [], 4)  # recorded, not yet written

    async def lifecycle() -> tuple[bool, bool]:
        await observability.start()
        sampler = observability._sampler
        await observability.start()  # a second start keeps the one sampler
        again = observability._sampler is sampler
        await observability.stop()
        return again, sampler is not None and sampler.cancelled()

    assert asyncio.run(lifecycle()) == (True, True)
    assert registry.get_sample_value("inference_batch_size_rows_sum") == 4


def test_the_package_version_is_known_or_says_it_is_not() -> None:
    version = package_version()
    assert version
    assert version[0].isdigit()
