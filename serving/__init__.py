"""Low-latency MNIST inference service.

Where a request goes, module by module:

    api/routes.py          ENTERS: handlers; api/decoding.py validates the body before queuing
    lifecycle.py           admitted: Service.admit() (ready? draining?), start-up and drain
    batching/queue.py      WAITS: the adaptive micro-batcher (one task, one inference executor)
    model.py               COMPUTED: onnxruntime session over a model repository version
    observability/plugin.py  OBSERVED: the one attach point for traces, /metrics and drift
    app.py                 the app factory that wires these; server.py runs it under uvicorn
"""
