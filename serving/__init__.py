"""Low-latency MNIST inference service.

Where a request goes, module by module:

    api/middleware.py   enters (X-Request-ID on every response)
    api/routes.py       handled: decoded + validated by api/decoding.py before it is queued
    batching/queue.py   waits: the adaptive micro-batcher (one task, one inference executor)
    model.py            computed: onnxruntime session over the model repository version
    batching/observer.py  observed: the hook interface the observability package implements
    lifecycle.py        readiness, draining on SIGTERM, the uvicorn server
"""
