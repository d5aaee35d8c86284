"""Where requests are OBSERVED: traces, Prometheus metrics, model quality and input drift.

telemetry.py   Observability: built once from the settings, one observer per part (the attach
               point is the app factory, serving/app.py, which hands each part its observer)
plugin.py      the Litestar side: GET /metrics, the sampler with the app's lifespan
requests.py    HTTP metrics and server spans: PipelineRequests (predictions), ObservedRequests
               (the Litestar routes)
observer.py    TelemetryObserver: the batcher's hooks; records per batch, writes per flush
tracing.py     TracerProvider + OTLP exporter, queue-wait and batch spans
metrics.py     every Prometheus metric (injectable registry, multiprocess aware); network.py
               the instance's network bytes
drift.py       input drift (PSI) against the training statistics; quality.py live quality and
               prediction drift for the whole service; inputs.py refused and aberrant inputs
models.py      model versions as metrics; otel_env.py the standard OTEL_* variables
"""

from serving.observability.metrics import prepare_multiprocess_dir
from serving.observability.plugin import ObservabilityPlugin
from serving.observability.telemetry import Observability

__all__ = ["Observability", "ObservabilityPlugin", "prepare_multiprocess_dir"]
