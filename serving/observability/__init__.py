"""Where requests are OBSERVED: traces, Prometheus metrics, model quality and input drift.

plugin.py        the entry point: ObservabilityPlugin(settings, metadata) for create_app
middleware.py    the one ASGI wrapper around the whole app: HTTP metrics of every request and,
                 for sampled ones, the server span
server_spans.py  head sampling from the raw traceparent; the SERVER span of a sampled request
tracing.py       TracerProvider + OTLP exporter, queue-wait and batch spans
observer.py      the batcher's BatchObserver: records per batch, writes the metrics per flush
metrics.py       every Prometheus metric (injectable registry, multiprocess aware)
drift.py         sliding-window PSI of input features against the training statistics
"""

from serving.observability.metrics import prepare_multiprocess_dir
from serving.observability.plugin import ObservabilityPlugin

__all__ = ["ObservabilityPlugin", "prepare_multiprocess_dir"]
