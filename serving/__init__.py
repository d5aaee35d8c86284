"""Low-latency MNIST inference service.

Where a request goes, room by room:

    transport/protocol.py  ARRIVES: limits, the one header pass, admission before any app code
    pipeline/stages.py     the request path of every prediction: admit -> read -> decode ->
                           submit -> encode -> observe, with a codec per door (v1, OIP v2)
    batching/queue.py      WAITS: the adaptive micro-batcher (one task, one inference executor)
    model.py               COMPUTED: onnxruntime session over a model repository version
    observability/         OBSERVED: telemetry.py builds every observer once
    api/                   every other route (Litestar): health, models, metadata, feedback, page
    lifecycle.py           Service: start-up, readiness, drain; versions.py: hot reload
    app.py                 create_app wires all of it (the one attach point);
                           transport/server.py runs it under uvicorn
"""
