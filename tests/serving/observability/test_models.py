"""Model versions as metrics: ``inference_model_info`` follows what the service serves (1) and
retires (0), and a refused version is counted."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from serving.model import load_model
from serving.observability.metrics import ServingMetrics
from serving.observability.models import ModelMetricsEvents
from serving.settings import Settings
from serving.versions import ModelEvents


def test_served_retired_and_refused_versions(
    tiny_model_repository: Path, registry: CollectorRegistry
) -> None:
    events: ModelEvents = ModelMetricsEvents(ServingMetrics(registry, [str(i) for i in range(10)]))
    model = load_model(Settings(model_repository=tiny_model_repository, model_variant="int8"))
    info = {"name": "mnist", "version": "1", "variant": "int8", "sha256": model.sha256}
    value = registry.get_sample_value
    states = []
    events.on_served(model)
    states.append(value("inference_model_info", info))
    events.on_retired(model)
    states.append(value("inference_model_info", info))
    assert states == [1, 0]
    assert value("inference_model_versions_refused_total") == 0
    events.on_refused(2, "its IO contract differs")
    events.on_refused(3, "is corrupt")
    assert value("inference_model_versions_refused_total") == 2
