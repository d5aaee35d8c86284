"""The naive baseline: ~20 lines of Litestar with onnxruntime called inline in the handler.

What a user would write first: decode the same JSON body, ``session.run`` on the event loop, no
batching, no validation beyond the decoder, no observability; same onnxruntime settings as the
service (``benchmarks.floor.session``). The service must beat it at every load to be worth it.

    python -m benchmarks.naive --model models/mnist/1/model.onnx --port 8200 [--workers 2]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from litestar import Litestar, Request, get, post
from litestar.response import Response

from benchmarks.ceiling import serve
from benchmarks.floor import session

MODEL_ENV = "NAIVE_MODEL"


class _Instances(msgspec.Struct):
    instances: list[list[float]]


def create_app() -> Litestar:
    """Built per worker: the model path comes from the environment (uvicorn factory)."""
    onnx = session(Path(os.environ[MODEL_ENV]))
    decoder = msgspec.json.Decoder(_Instances)

    @post("/v1/predict", status_code=200)
    async def predict(request: Request[Any, Any, Any]) -> Response[bytes]:
        pixels = np.asarray(decoder.decode(await request.body()).instances, dtype=np.float32)
        probabilities = onnx.run(["probabilities"], {"pixels": pixels})[0]
        labels = probabilities.argmax(axis=1).tolist()
        predictions = [
            {"label": label, "confidence": float(row[label]), "probabilities": row.tolist()}
            for label, row in zip(labels, probabilities, strict=True)
        ]
        body = msgspec.json.encode({"predictions": predictions, "model": {"name": "naive"}})
        return Response(content=body, media_type="application/json")

    @get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return Litestar(route_handlers=[predict, readyz])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ[MODEL_ENV] = args.model
    serve("benchmarks.naive:create_app", args)


if __name__ == "__main__":
    main()
