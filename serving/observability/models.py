"""Model versions as metrics: the ``ModelEvents`` the service reports hot reloads to.

The service only calls these three methods (``serving.versions.ModelEvents``); it knows nothing
of Prometheus.
"""

from __future__ import annotations

from serving.model import LoadedModel
from serving.observability.metrics import ServingMetrics


class ModelMetricsEvents:
    """``model_info`` follows the served versions; refused versions are counted."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def on_served(self, model: LoadedModel) -> None:
        self._metrics.set_model(model.name, model.version, model.variant, model.sha256)

    def on_retired(self, model: LoadedModel) -> None:
        self._metrics.set_model(
            model.name, model.version, model.variant, model.sha256, served=False
        )

    def on_refused(self, version: int, reason: str) -> None:
        self._metrics.model_refused.inc()
