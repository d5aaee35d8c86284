"""The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``, what
``tritonclient.grpc`` and KServe's clients call), served by each worker on ``grpc_port``.

- ``proto/grpc_service.proto``, ``generated/``: the API (``make grpc-code`` regenerates);
- ``codec.py``: infer messages <-> arrays (the gRPC codec of the request pipeline);
- ``pixels.py``: the pixel rule shared with the HTTP codec;
- ``errors.py``: outcomes -> status codes, with retry info;
- ``access.py``: the one hook where credentials will be checked;
- ``service.py``: the methods; ``adapter.py``: ModelInfer's TEMPORARY way to the batcher;
- ``server.py``: the ``grpc.aio`` server, health and reflection, its start, drain and stop.
"""

from serving.grpc.server import GrpcServer, GrpcStartError

__all__ = ["GrpcServer", "GrpcStartError"]
