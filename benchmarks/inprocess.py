"""Drive the service's ASGI app in-process: ``python -m benchmarks.inprocess --requests N``.

No sockets and no HTTP parser: ``create_app(Settings())`` (settings from the ``SERVING_*``
environment, as in production) gets ``--concurrency`` clients, each sending one MNIST digit per
``POST /v1/predict`` and awaiting the answer before the next, until ``--requests`` are answered.
The lifespan runs as a server would run it (model load, warm-up, batcher start, drain).

It exists to be run under ``valgrind --tool=callgrind`` by :mod:`benchmarks.instructions`:
counting instructions instead of timing makes the cost of a feature (tracing, metrics)
repeatable on a noisy VM, and the in-process driver keeps the load generator's instructions out
of the count. Prints one JSON line: requests, statuses, batches and rows computed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import numpy as np
import onnxruntime as ort

from loadtest.data import json_body, load_digits, mnist_dir
from serving.app import ServiceApp, create_app
from serving.model import LoadedModel, load_model
from serving.settings import Settings


class CountingSession:
    """An onnxruntime session that counts the batches and rows it computes."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self.batches = 0
        self.rows = 0

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.batches += 1
        self.rows += len(next(iter(feeds.values())))
        return cast("list[np.ndarray]", self._session.run(names, feeds))


async def _lifespan(app: ServiceApp, phase: str, inbox: asyncio.Queue[dict[str, Any]],
                    outbox: asyncio.Queue[dict[str, Any]]) -> None:  # fmt: skip
    await inbox.put({"type": f"lifespan.{phase}"})
    reply = await outbox.get()
    if reply["type"] != f"lifespan.{phase}.complete":
        raise RuntimeError(f"lifespan {phase} failed: {reply}")


@contextlib.asynccontextmanager
async def running(app: ServiceApp) -> AsyncIterator[dict[str, Any]]:
    """``async with running(app) as state:`` the app's lifespan as a server runs it (model
    load, warm-up, batcher start; drain and stop on exit); ``state`` goes into each scope."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    state: dict[str, Any] = {}
    lifespan: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}
    server = asyncio.create_task(app(lifespan, inbox.get, outbox.put))  # type: ignore[arg-type]
    await _lifespan(app, "startup", inbox, outbox)
    try:
        yield state
    finally:
        await _lifespan(app, "shutdown", inbox, outbox)
        await server


def http_scope(
    body: bytes,
    state: dict[str, Any],
    path: str = "/v1/predict",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    """An ASGI HTTP scope as uvicorn builds it for a POST of ``body`` (JSON unless ``headers``
    give the content type and any other header; host and content-length are added)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            *(headers if headers is not None else [(b"content-type", b"application/json")]),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }


async def _request(app: ServiceApp, body: bytes, state: dict[str, Any]) -> int:
    """One POST /v1/predict as a server would deliver it; returns the response status."""
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # a server sends http.disconnect only once the client is gone
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(http_scope(body, state), receive, send)  # type: ignore[arg-type]
    return status


async def _client(app: ServiceApp, bodies: Iterator[bytes], budget: Iterator[int],
                  state: dict[str, Any], statuses: Counter[int]) -> None:  # fmt: skip
    for _ in budget:
        statuses[await _request(app, next(bodies), state)] += 1


async def drive(requests: int, concurrency: int, digits: int, mnist: str | None) -> dict[str, Any]:
    images, _labels = load_digits(mnist_dir(mnist), digits)
    bodies = itertools.cycle([json_body(image[None]) for image in images])
    sessions: list[CountingSession] = []

    def counting_loader(settings: Settings) -> LoadedModel:
        model = load_model(settings)
        sessions.append(CountingSession(model.session))
        return dataclasses.replace(model, session=cast("ort.InferenceSession", sessions[-1]))

    app = create_app(Settings(), model_loader=counting_loader)
    statuses: Counter[int] = Counter()
    async with running(app) as state:
        warm_up = sessions[0].batches, sessions[0].rows  # warm-up batches are not the workload
        budget = iter(range(requests))  # shared: the clients together answer exactly ``requests``
        await asyncio.gather(
            *(_client(app, bodies, budget, state, statuses) for _ in range(concurrency))
        )
    return {
        "requests": requests,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "batches": sessions[0].batches - warm_up[0],
        "rows": sessions[0].rows - warm_up[1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--digits", type=int, default=500)
    parser.add_argument("--mnist-dir", default=None)
    parser.add_argument("--seed", type=int, default=0, help="seeds random (trace sampling)")
    args = parser.parse_args()
    random.seed(args.seed)
    result = asyncio.run(drive(args.requests, args.concurrency, args.digits, args.mnist_dir))
    print(json.dumps(result), flush=True)
    return 0 if set(result["statuses"]) == {"200"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
