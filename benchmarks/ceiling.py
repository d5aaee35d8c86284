"""The HTTP ceiling: a hello-world Litestar app that parses the predict body and answers a constant.

It pays what every request to the service pays before inference (HTTP parsing, routing, reading
the body, msgspec-decoding the 784 floats, encoding a prediction-shaped response) and nothing
else, under the same server settings as the service (uvicorn, uvloop + httptools, 1 worker). The
service's distance from it is the cost of validation, batching and inference.

    python -m benchmarks.ceiling --port 8100
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, get, post
from litestar.response import Response

PIXELS = 784


class _Instances(msgspec.Struct):
    instances: list[list[float]]


_json_decoder = msgspec.json.Decoder(_Instances)
_PREDICTION = {
    "label": 7,
    "confidence": 0.99,
    "probabilities": [0.001] * 7 + [0.99, 0.001, 0.001],
}
_MODEL = {"name": "ceiling", "version": "0"}


def _answer(count: int) -> Response[bytes]:
    body = msgspec.json.encode({"predictions": [_PREDICTION] * count, "model": _MODEL})
    return Response(content=body, media_type="application/json")


@post("/v1/predict", status_code=200)
async def predict(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Decode like the service (JSON floats or raw uint8 rows), answer a constant."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/octet-stream"):
        count = len(body) // PIXELS
    else:
        count = len(_json_decoder.decode(body).instances)
    return _answer(count)


@get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[predict, readyz])


def serve(factory: str, args: argparse.Namespace) -> None:
    """Run an app factory the way the service runs (uvloop + httptools, no access log)."""
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
    serve("benchmarks.ceiling:create_app", parser.parse_args())


if __name__ == "__main__":
    main()
