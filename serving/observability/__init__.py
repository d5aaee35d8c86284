"""Where requests are OBSERVED: traces, Prometheus metrics, model quality and input drift.

plugin.py      the entry point: ObservabilityPlugin(settings, metadata) for create_app
tracing.py     TracerProvider + OTLP exporter, server-span config, queue-wait/batch spans
metrics.py     every Prometheus metric (injectable registry, multiprocess aware)
middleware.py  HTTP request count/latency by route template (wraps the whole app)
observer.py    the batcher's BatchObserver implementation (spans + metrics + drift per batch)
drift.py       sliding-window PSI of input features against the training statistics
"""

from serving.observability.metrics import prepare_multiprocess_dir
from serving.observability.plugin import ObservabilityPlugin

__all__ = ["ObservabilityPlugin", "prepare_multiprocess_dir"]
