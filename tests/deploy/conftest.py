"""Deploy fixtures: the names of every metric the service exports (for dashboards and alerts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from model_repository.layout import METADATA_FILE
from model_repository.metadata import load_metadata
from serving.observability.drift import DriftMonitor
from serving.observability.inputs import InputMetrics
from serving.observability.metrics import ServingMetrics
from serving.observability.quality import QualityMetrics, ServiceDrift
from serving.observability.rollout import RolloutMetrics


@pytest.fixture
def metric_names(tiny_model_repository: Path) -> set[str]:
    metadata = load_metadata(tiny_model_repository / "mnist" / "1" / METADATA_FILE)
    registry = CollectorRegistry()
    ServingMetrics(registry, metadata.labels)
    drift = DriftMonitor(metadata.training_stats, 10, registry=registry)
    drift.publish()
    QualityMetrics(registry, metadata.labels, 0.9)
    ServiceDrift(registry, drift, 10, len(metadata.labels), metadata.prediction_reference)
    InputMetrics(registry)
    RolloutMetrics(registry, None)
    names = set()
    for family in registry.collect():
        names |= {s.name for s in family.samples} | {family.name}
        names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count", "_total")}
    return names
