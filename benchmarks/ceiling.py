"""The HTTP ceilings: servers that parse the predict body and answer a constant prediction.

``--app litestar`` (the default; "the hello-world ceiling" of docs/performance.md and issue 24): a
hello-world Litestar app. It pays what a request to a Litestar service pays before inference
(HTTP parsing, Litestar's routing, request and response layers, reading the body,
msgspec-decoding the 784 floats, encoding a prediction-shaped response) and nothing else, under
the same server settings as the service (uvicorn, uvloop + httptools).

``--app transport`` ("the transport ceiling"): a bare ASGI callable, no Litestar, on uvicorn with
the service's own protocol class (serving/transport/protocol.py: its limits and its header
pass), doing the same decode and answering the same constant. The service's predictions no
longer go through Litestar's handler layers (docs/decisions.md, "One request pipeline"), so the
hello-world ceiling is no longer a strict upper bound for them: this one is.

With ``--workers`` > 1 both run under the service's own supervisor
(serving/transport/supervisor.py): one process per worker, each on its own SO_REUSEPORT socket,
so connections spread across workers exactly as they do for the service (uvicorn's shared
socket can land all 32 keep-alive connections of a c=32 run on one worker).

``--grpc-port P`` (1 worker; "the gRPC ceiling"): beside the HTTP app, in the same uvloop loop as
the service runs its gRPC door, a ``grpc.aio`` server whose ModelInfer parses the request
(protobuf, then the raw FP32 rows into an array, as the service's codec does) and answers a
constant response of the right row count. It is what any grpcio service pays per call before
its own work: the bound of the service's gRPC door (docs/performance.md).

    python -m benchmarks.ceiling --port 8100 [--app transport] [--workers 2] [--grpc-port 8101]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

import grpc
import msgspec
import numpy as np
import uvicorn
import uvloop
from litestar import Litestar, Request, get, post
from litestar.response import Response
from litestar.types import Receive, Send

from serving.grpc.generated import grpc_service_pb2 as pb
from serving.settings import Settings
from serving.transport.protocol import guarded_protocol
from serving.transport.server import connection_limits
from serving.transport.supervisor import Supervisor

PIXELS = 784


class _Instances(msgspec.Struct):
    instances: list[list[float]]


_json_decoder = msgspec.json.Decoder(_Instances)
#: Which app a supervised worker serves (the supervisor hands workers only their settings).
APP_ENV = "CEILING_APP"
FACTORIES = {
    "litestar": "benchmarks.ceiling:create_app",
    "transport": "benchmarks.ceiling:create_transport_app",
}
_PREDICTION = {
    "label": 7,
    "confidence": 0.99,
    "probabilities": [0.001] * 7 + [0.99, 0.001, 0.001],
}
_MODEL = {"name": "ceiling", "version": "0"}


def _answer_body(count: int) -> bytes:
    return msgspec.json.encode({"predictions": [_PREDICTION] * count, "model": _MODEL})


def _answer(count: int) -> Response[bytes]:
    return Response(content=_answer_body(count), media_type="application/json")


def count_instances(body: bytes, content_type: bytes) -> int:
    """Instances in a predict body, decoded as the service decodes it (JSON floats, raw rows)."""
    if content_type.startswith(b"application/octet-stream"):
        return len(body) // PIXELS
    return len(_json_decoder.decode(body).instances)


@post("/v1/predict", status_code=200)
async def predict(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Decode like the service (JSON floats or raw uint8 rows), answer a constant."""
    body = await request.body()
    return _answer(count_instances(body, request.headers.get("content-type", "").encode("latin-1")))


@get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[predict, readyz])


_JSON = [(b"content-type", b"application/json")]
_READY = b'{"status":"ready"}'
_NOT_FOUND = b'{"error":"not found"}'


async def _transport_app(scope: Any, receive: Receive, send: Send) -> None:
    """The transport ceiling's ASGI callable: /v1/predict and /readyz, nothing else."""
    if scope["type"] != "http":
        return  # lifespan is off (uvicorn config); nothing else reaches an HTTP server
    if scope["path"] == "/v1/predict" and scope["method"] == "POST":
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        content_type = next((v for n, v in scope["headers"] if n == b"content-type"), b"")
        status, body = 200, _answer_body(count_instances(b"".join(chunks), content_type))
    elif scope["path"] == "/readyz":
        status, body = 200, _READY
    else:
        status, body = 404, _NOT_FOUND
    headers = [*_JSON, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def create_transport_app() -> Any:
    return _transport_app


def uvicorn_config(app: str, host: str, port: int) -> uvicorn.Config:
    """The server the way the service runs it (uvloop + httptools, no access log); the transport
    ceiling with the service's protocol class and its default limits."""
    transport = app == "transport"
    return uvicorn.Config(
        FACTORIES[app],
        factory=True,
        host=host,
        port=port,
        loop="uvloop",
        http=guarded_protocol(connection_limits(Settings())) if transport else "httptools",
        lifespan="off" if transport else "auto",
        access_log=False,
        log_level="warning",
    )


GRPC_SERVICE = "inference.GRPCInferenceService"


def grpc_answer(rows: int) -> bytes:
    """A ModelInferResponse for ``rows`` rows: FP32 probabilities and INT64 labels, raw."""
    probabilities = np.full((rows, 10), 0.001, dtype="<f4")
    probabilities[:, 7] = 0.99
    tensor = pb.ModelInferResponse.InferOutputTensor
    response = pb.ModelInferResponse(
        model_name="ceiling",
        model_version="0",
        outputs=[
            tensor(name="probabilities", datatype="FP32", shape=[rows, 10]),
            tensor(name="label", datatype="INT64", shape=[rows]),
        ],
        raw_output_contents=[probabilities.tobytes(), np.full(rows, 7, dtype="<i8").tobytes()],
    )
    return response.SerializeToString()


_GRPC_ANSWERS: dict[int, bytes] = {}


async def grpc_infer(raw: bytes, context: Any) -> bytes:
    """Parse like the service (the message, then its raw FP32 rows), answer a constant."""
    request = pb.ModelInferRequest.FromString(raw)
    rows = np.frombuffer(request.raw_input_contents[0], dtype="<f4").reshape(-1, PIXELS).shape[0]
    answer = _GRPC_ANSWERS.get(rows)
    if answer is None:
        answer = _GRPC_ANSWERS[rows] = grpc_answer(rows)
    return answer


async def serve_with_grpc(config: uvicorn.Config, grpc_port: int) -> None:
    """The HTTP app and a gRPC ModelInfer on one loop, with the service's gRPC limits."""
    settings = Settings()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", settings.max_body_bytes),
            ("grpc.max_concurrent_streams", settings.grpc_max_concurrent_streams),
        ]
    )
    # No (de)serializers: bytes in, bytes out.
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(grpc_infer)
    server.add_registered_method_handlers(GRPC_SERVICE, {"ModelInfer": handler})
    server.add_insecure_port(f"{config.host}:{grpc_port}")
    await server.start()
    try:
        await uvicorn.Server(config).serve()
    finally:
        await server.stop(0)


def serve_worker(settings: Settings, listener: socket.socket) -> None:
    """One supervised worker (spawned by serving.transport.supervisor): serve on ``listener``."""
    app = os.environ.get(APP_ENV, "litestar")
    uvicorn.Server(uvicorn_config(app, settings.host, settings.port)).run(sockets=[listener])


def serve(factory: str, args: argparse.Namespace) -> None:
    """Run an app factory the way the service runs (uvloop + httptools, no access log), with
    uvicorn's own workers (the naive server: what a user writes)."""
    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=args.workers,
        access_log=False,
        log_level="warning",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--app", choices=sorted(FACTORIES), default="litestar")
    parser.add_argument("--grpc-port", type=int, help="also serve the gRPC ceiling (1 worker)")
    args = parser.parse_args()
    if args.grpc_port is not None:
        if args.workers != 1:
            parser.error("--grpc-port serves one worker")
        uvloop.run(serve_with_grpc(uvicorn_config(args.app, args.host, args.port), args.grpc_port))
        return
    if args.workers == 1:
        uvicorn.Server(uvicorn_config(args.app, args.host, args.port)).run()
        return
    os.environ[APP_ENV] = args.app  # spawned workers inherit it
    settings = Settings(host=args.host, port=args.port, workers=args.workers, grpc_port=0)
    sys.exit(Supervisor(settings, serve_worker).run())


if __name__ == "__main__":
    main()
