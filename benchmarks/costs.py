"""``python -m benchmarks.costs --models models``: the cost table, µs per request for each stage
and feature of the request pipeline, measured in process with the service's own functions.

Why in process: a feature costing 2 µs in a ~150 µs request is invisible in a throughput run on a
VM whose speed drifts ~15 %, but it is the price the next feature must be compared with. Here
each stage runs alone, on the real objects (the app's pipeline, codecs, guard, batcher,
observers), on one real MNIST digit, in a tight loop:

* a case runs ``number`` times per repeat (``number`` chosen so a repeat lasts ``--target-s``),
  ``--repeat`` repeats; the table keeps the MINIMUM per request: noise on a shared machine only
  ever adds time, so the fastest repeat is the closest to the code's own cost (``timeit``'s
  rule). The spread column, (median - min) / min, says how noisy the repeats were;
* the cost of the empty loop and call (sync, ``await`` of a no-op, or ``await asyncio.sleep(0)``
  for cases that must yield to the loop) is measured the same way and subtracted;
* the garbage collector is off while a repeat runs (as in ``timeit``): a collection's cost
  belongs to the process, not to the stage that happened to trigger it;
* on uvloop, like the server.

What it does not see: cache misses caused by everything else a server does between two
requests, the kernel's socket work (one row measures a socket write), and contention with the
inference thread. So the sum of the rows is below what a request costs under load; the
"whole request" rows (the ASGI app driven in process) show how far, and ``make bench``'s
closed-loop runs show the rest. Writes ``<out>/<date>-costs.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import inspect
import io
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil
from litestar.types import HTTPRequestEvent, Receive
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from benchmarks.ceiling import count_instances
from benchmarks.h2sweep import infer_request
from benchmarks.inprocess import http_scope, running
from loadtest.data import binary_body, json_body, load_digits, mnist_dir
from loadtest.oip import v2_binary_body, v2_json_body
from model_repository.layout import resolve
from serving.access.guard import Guard
from serving.access.keys import digest_of, parse_keys
from serving.access.scopes import route_scope
from serving.app import ServiceApp, create_app
from serving.batching import Batcher, BatchObserver, NullObserver, Outputs, QueuedRequest
from serving.batching.merge import split
from serving.feedback.store import Labelled, Outcome
from serving.grpc.access import metadata
from serving.grpc.codec import decode_infer_request, encode_infer_response
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.model import locate_metadata
from serving.observability import Observability
from serving.pipeline import head as head_module
from serving.pipeline.body import read_body
from serving.pipeline.codec import OIP, V1, Decoded, HttpCodec
from serving.pipeline.doors import V1_DOOR, find_door
from serving.pipeline.head import RequestHead, read_head
from serving.pipeline.hooks import NullRequestObserver, RequestObserver
from serving.pipeline.stages import Observation, Ticket, send_answer
from serving.rollout.evidence import Role
from serving.rollout.policy import POLICY_FILE
from serving.rollout_service import CanaryRoute, RecordingObserver, RolloutService
from serving.settings import Settings
from serving.testing import SERVE, ServerProcess, cpu_seconds_of

logger = logging.getLogger(__name__)

V1_PATH = "/v1/predict"
V2_PATH = "/v2/models/mnist/infer"
#: A key for the keys-on cases; its digest is what the keys file holds.
KEY = "costs-benchmark-key-0123456789abcdef"
#: Flushing metrics is per interval, not per request: the metric cases flush once per this many
#: requests, about one 5 s sample interval (the default) at 5,000 requests/s.
FLUSH_EVERY = 25_000
#: The default root sampling ratio (serving/observability/otel_env.py): the "tracing at the
#: default ratio" row weighs the sampled and unsampled costs with it.
DEFAULT_SAMPLE_RATIO = 0.01
#: Requests per call of the batch-32 cases.
BATCH = 32


Sync = Callable[[], object]
Async = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Case:
    """One row: ``fn`` (sync) or ``afn`` (async) serves ``requests`` requests per call."""

    stage: str
    name: str
    fn: Sync | None = None
    afn: Async | None = None
    requests: int = 1
    #: The empty loop subtracted: "sync", "async" or "yield" (``await asyncio.sleep(0)``).
    baseline: str = "sync"
    #: Calls per repeat, fixed (None: chosen from ``--target-s``).
    number: int | None = None
    #: Run once at the end of every repeat, timed with it (a flush whose cost is amortised).
    finish: Sync | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Cost:
    stage: str
    name: str
    #: µs per request: the fastest repeat, the empty loop subtracted.
    us: float
    #: (median - min) / min over the repeats.
    spread: float
    number: int
    repeats: int
    note: str = ""


@dataclass(slots=True)
class Timer:
    target_s: float
    repeat: int
    baselines: dict[str, float] = field(default_factory=dict)

    async def calibrate(self) -> None:
        """The per-call cost of the empty loops (sync call, await, await sleep(0))."""

        def noop() -> None:
            return None

        async def anoop() -> None:
            return None

        async def yield_once() -> None:
            await asyncio.sleep(0)

        for kind, case in (
            ("sync", Case("", "", fn=noop)),
            ("async", Case("", "", afn=anoop)),
            ("yield", Case("", "", afn=yield_once)),
        ):
            per_call, _, _ = await self._repeats(case, 0.0)
            self.baselines[kind] = per_call

    async def measure(self, case: Case) -> Cost:
        empty = self.baselines.get(case.baseline, 0.0)
        per_call, spread, number = await self._repeats(case, empty)
        return Cost(
            case.stage,
            case.name,
            max(per_call, 0.0) / case.requests * 1e6,
            spread,
            number,
            self.repeat,
            case.note,
        )

    async def _repeats(self, case: Case, empty: float) -> tuple[float, float, int]:
        """``(seconds per call, spread, number)``: the minimum over the repeats."""
        number = case.number or await self._autorange(case)
        times = [(await self._once(case, number)) / number - empty for _ in range(self.repeat)]
        fastest = min(times)
        spread = (statistics.median(times) - fastest) / fastest if fastest > 0 else 0.0
        return fastest, spread, number

    async def _autorange(self, case: Case) -> int:
        number = 1
        while True:
            if await self._once(case, number) >= self.target_s or number >= 1 << 22:
                return number
            number *= 4

    @staticmethod
    async def _once(case: Case, number: int) -> float:
        with _no_gc():
            if case.fn is not None:
                fn = case.fn
                started = time.perf_counter()
                for _ in range(number):
                    fn()
            else:
                assert case.afn is not None
                afn = case.afn
                started = time.perf_counter()
                for _ in range(number):
                    await afn()
            if case.finish is not None:
                case.finish()
            return time.perf_counter() - started


@contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------------- fixtures
class DropExporter(SpanExporter):
    """Spans leave the request path through the real BatchSpanProcessor, then vanish: the
    request-path cost of tracing without a collector (encoding is its own row)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class _Transport:
    """What uvicorn's response cycle writes to, minus the socket (a row measures a write)."""

    def write(self, data: bytes) -> None:
        return None

    def is_closing(self) -> bool:
        return False


class _Flow:
    write_paused = False


@dataclass(frozen=True, slots=True)
class Bodies:
    """One MNIST test digit in every wire format the service takes."""

    pixels: npt.NDArray[np.uint8]  # (1, 784)
    v1_json: bytes
    v1_raw: bytes
    v1_png: bytes
    v2_json: bytes
    v2_binary: bytes
    v2_header_length: int
    grpc_raw: bytes
    grpc_contents: bytes

    @classmethod
    def of(cls, pixels: npt.NDArray[np.uint8]) -> Bodies:
        png = io.BytesIO()
        Image.fromarray(pixels.reshape(28, 28)).save(png, format="PNG")
        v2_binary, header_length = v2_binary_body(pixels)
        return cls(
            pixels,
            json_body(pixels),
            binary_body(pixels),
            png.getvalue(),
            v2_json_body(pixels),
            v2_binary,
            header_length,
            infer_request(pixels, raw=True).SerializeToString(),
            infer_request(pixels, raw=False).SerializeToString(),
        )


def client_headers(
    content_type: bytes, length: int, key: bool = False
) -> list[tuple[bytes, bytes]]:
    """What a typical HTTP client sends (httpx/requests: 7 headers), optionally with a key."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"python-httpx/0.28.1"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"connection", b"keep-alive"),
        (b"content-type", content_type),
        (b"content-length", b"%d" % length),
    ]
    if key:
        headers.append((b"authorization", f"Bearer {KEY}".encode()))
    return headers


def keys_table(rate_limited: bool) -> Guard:
    """A guard over a one-key table (infer scope); ``rate_limited``: a tiny rate, burst 1,
    and its one token taken, so every check is a 429 decision."""
    limit = "rate_per_s = 0.001\nburst = 1\n" if rate_limited else ""
    text = f'[[keys]]\nname = "bench"\nkey = "{KEY}"\nscopes = ["infer"]\n{limit}'
    guard = Guard(parse_keys(text.encode()))
    if rate_limited:
        guard.check(route_scope("POST", V1_PATH), f"Bearer {KEY}")  # the burst's one token
    return guard


def observability(settings: Settings, **update: Any) -> Observability:
    """Observability built as the app builds it, with ``update`` on the settings; tracing
    spans go through a BatchSpanProcessor to :class:`DropExporter`."""
    changed = settings.model_copy(update=update)
    return Observability(
        changed, locate_metadata(changed), span_processor=BatchSpanProcessor(DropExporter())
    )


def softmax_rows(rows: int, classes: int = 10, seed: int = 0) -> npt.NDArray[np.float32]:
    logits = np.random.default_rng(seed).normal(size=(rows, classes)).astype(np.float32)
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities: npt.NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(
        np.float32
    )
    return probabilities


class TrivialModel:
    """The batcher's model for the submit/batch rows: a constant answer, no compute."""

    def __init__(self) -> None:
        self._answers = {rows: Outputs.of(softmax_rows(rows)) for rows in range(1, 65)}

    def __call__(self, pixels: npt.NDArray[np.float32]) -> Outputs:
        return self._answers[int(pixels.shape[0])]


def batcher(model: Callable[[npt.NDArray[np.float32]], Outputs], inline_max_rows: int) -> Batcher:
    """A batcher with the service's default settings around ``model``."""
    defaults = Settings()
    return Batcher(
        model,
        max_batch_size=defaults.max_batch_size,
        max_batch_delay_ms=defaults.max_batch_delay_ms,
        max_queue_size=defaults.max_queue_size,
        inline_max_rows=inline_max_rows,
    )


# ---------------------------------------------------------------------- the cases
@dataclass
class Fixtures:
    """Everything the cases run on; built once, inside the running event loop."""

    settings: Settings
    bodies: Bodies
    off: ServiceApp  # observability off
    defaults: ServiceApp  # metrics on, tracing at the default ratio (spans dropped)
    off_state: dict[str, Any]
    defaults_state: dict[str, Any]
    metrics: Observability
    sampled: Observability
    unsampled: Observability
    inline: Batcher
    threaded: Batcher
    #: Called once the cases ran (sockets the send rows opened).
    closers: list[Callable[[], None]] = field(default_factory=list)


async def fixtures(
    stack: AsyncExitStack, settings: Settings, pixels: npt.NDArray[np.uint8]
) -> Fixtures:
    off_settings = settings.model_copy(update={"metrics_enabled": False, "tracing_enabled": False})
    off = create_app(off_settings)
    defaults = create_app(settings, observability=observability(settings, tracing_enabled=True))
    off_state = await stack.enter_async_context(running(off))
    defaults_state = await stack.enter_async_context(running(defaults))
    inline, threaded = batcher(TrivialModel(), 8), batcher(TrivialModel(), 0)
    for started in (inline, threaded):
        await started.start()
        stack.push_async_callback(started.stop)
    quiet = {"metrics_enabled": False, "tracing_enabled": True}
    return Fixtures(
        settings,
        Bodies.of(pixels),
        off,
        defaults,
        off_state,
        defaults_state,
        observability(settings, metrics_enabled=True, tracing_enabled=False),
        observability(settings, **quiet, trace_sample_ratio=1.0),
        observability(settings, **quiet, trace_sample_ratio=0.0),
        inline,
        threaded,
    )


def arrive_cases(f: Fixtures) -> list[Case]:
    pipeline = f.off.pipeline
    body = f.bodies.v1_json
    plain = client_headers(b"application/json", len(body))
    keyed = client_headers(b"application/json", len(body), key=True)
    head = read_head(plain)
    keyed_head = read_head(keyed)
    guard_none, guard_key, guard_limited = Guard(None), keys_table(False), keys_table(True)
    authorization = keyed_head.authorization
    token = KEY.encode()
    return [
        Case("arrive", "header pass (read_head), 7 headers", fn=lambda: read_head(plain)),
        Case("arrive", "header pass, 8 headers with Authorization", fn=lambda: read_head(keyed)),
        Case("arrive", "find the door: /v1/predict", fn=lambda: find_door("POST", V1_PATH)),
        Case("arrive", "find the door: /v2/models/mnist/infer",
             fn=lambda: find_door("POST", V2_PATH)),
        Case("arrive", "access, no keys file (route scope + check)",
             fn=lambda: guard_none.check(route_scope("POST", V1_PATH), None)),
        Case("arrive", "access, valid key (route scope + the verified key's lookup)",
             fn=lambda: guard_key.check(route_scope("POST", V1_PATH), authorization),
             note="a key's first request per table also hashes it: the next row"),
        Case("arrive", "SHA-256 of a key (its first request, once per key and table)",
             fn=lambda: digest_of(token)),
        Case("arrive", "access, rate-limited key (the 429 decision)",
             fn=lambda: guard_limited.check(route_scope("POST", V1_PATH), authorization),
             note="its Decision (message, Retry-After) is built per refusal"),
        Case("arrive", "admission (Pipeline.admit, idle service)",
             fn=lambda: pipeline.admit(V1_DOOR, head, time.monotonic()),
             note="version, contract, row estimate, queue and wait checks, Ticket, request id"),
        Case("arrive", "whole arrive, v1 (Pipeline.arrive: access + door + admission)",
             fn=lambda: pipeline.arrive("POST", V1_PATH, head, time.monotonic())),
    ]  # fmt: skip


def decode_cases(f: Fixtures) -> list[Case]:
    b = f.bodies
    contract = f.off.pipeline.contract(_model(f.off))
    limit = f.settings.max_body_bytes
    json_head = read_head(client_headers(b"application/json", len(b.v1_json)))
    raw_head = read_head(client_headers(b"application/octet-stream", len(b.v1_raw)))
    png_head = read_head(client_headers(b"image/png", len(b.v1_png)))
    v2_json_head = read_head(client_headers(b"application/json", len(b.v2_json)))
    v2_bin_head = read_head(client_headers(b"application/octet-stream", len(b.v2_binary)))
    v2_bin_head.header_length = b"%d" % b.v2_header_length

    def grpc(data: bytes) -> Sync:
        return lambda: decode_infer_request(pb.ModelInferRequest.FromString(data), contract)

    return [
        Case("decode", "v1 JSON, one digit",
             fn=lambda: V1.decode(json_head, b.v1_json, contract, limit)),
        Case("decode", "v1 raw uint8 (octet-stream)",
             fn=lambda: V1.decode(raw_head, b.v1_raw, contract, limit)),
        Case("decode", "v1 PNG", fn=lambda: V1.decode(png_head, b.v1_png, contract, limit)),
        Case("decode", "OIP v2 JSON (FP32 data)",
             fn=lambda: OIP.decode(v2_json_head, b.v2_json, contract, limit)),
        Case("decode", "OIP v2 binary FP32",
             fn=lambda: OIP.decode(v2_bin_head, b.v2_binary, contract, limit)),
        Case("decode", "gRPC raw_input_contents FP32 (protobuf parse + decode)",
             fn=grpc(b.grpc_raw)),
        Case("decode", "for scale: the ceilings' decode (msgspec floats; no check, no array)",
             fn=lambda: count_instances(b.v1_json, b"application/json"),
             note="benchmarks/ceiling.py: what the hello-world ceiling pays instead"),
        Case("decode", "gRPC contents fp32_contents (protobuf parse + decode)",
             fn=grpc(b.grpc_contents)),
    ]  # fmt: skip


def _model(app: ServiceApp) -> Any:
    model = app.service.model
    assert model is not None, "the app is not serving"
    return model


def batch_cases(f: Fixtures) -> list[Case]:
    pixels = f.bodies.pixels.astype(np.float32) / np.float32(255)
    inline, threaded = f.inline, f.threaded

    async def lone_inline() -> None:
        await asyncio.sleep(0)  # a lone request arrives in its own loop iteration
        await inline.submit(pixels, time.monotonic() + 60)

    async def lone_threaded() -> None:
        await threaded.submit(pixels, time.monotonic() + 60)

    async def thirty_two() -> None:
        deadline = time.monotonic() + 60
        await asyncio.gather(*(inline.submit(pixels, deadline) for _ in range(BATCH)))

    async def nothing() -> None:
        return None

    async def thirty_two_tasks() -> None:
        await asyncio.gather(*(nothing() for _ in range(BATCH)))

    async def body_read() -> None:
        await read_body(_receive(f.bodies.v1_json), f.settings.max_body_bytes, None)

    return [
        Case("read", "body read (read_body, one ASGI message)", afn=body_read, baseline="async"),
        Case("submit/batch", "batch 1, idle batcher: computed inline (the default)",
             afn=lone_inline, baseline="yield",
             note="trivial model: the batcher's own work, no compute"),
        Case("submit/batch", "batch 1 through the batch task (inline off)", afn=lone_threaded,
             baseline="async", note="future, wake-up, thread hop, deadline timer"),
        Case("submit/batch", f"batch {BATCH}: {BATCH} concurrent submits, per request",
             afn=thirty_two, requests=BATCH, baseline="async",
             note="incl. gather's task per request (next row)"),
        Case("submit/batch", f"asyncio: {BATCH} tasks gathered, no work, per request",
             afn=thirty_two_tasks, requests=BATCH, baseline="async",
             note="uvicorn makes a task per request anyway"),
    ]  # fmt: skip


def _receive(body: bytes) -> Receive:
    """An ASGI receive that hands over ``body`` in one message, every time it is called."""

    async def receive() -> HTTPRequestEvent:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def result_cases(f: Fixtures) -> list[Case]:
    one, many = softmax_rows(1), softmax_rows(BATCH)
    ids = f.off.feedback.issue_ids
    labels1, conf1 = [3], [0.9]
    outputs32 = Outputs.of(many)
    labels32, conf32 = outputs32.labels.tolist(), outputs32.confidences.tolist()
    model = _model(f.off)
    pixels = f.bodies.pixels.astype(np.float32) / np.float32(255)
    return [
        Case("result", "argmax + confidence (Outputs.of), 1 row", fn=lambda: Outputs.of(one)),
        Case("result", f"argmax + confidence, per row of {BATCH}", fn=lambda: Outputs.of(many),
             requests=BATCH),
        Case("result", "prediction id signing (BLAKE2b MAC), 1 row",
             fn=lambda: ids(labels1, conf1, "1")),
        Case("result", f"prediction id signing, per row of {BATCH}",
             fn=lambda: ids(labels32, conf32, "1"), requests=BATCH),
        Case("result", "the model itself: LoadedModel.predict, 1 row (for scale)",
             fn=lambda: model.predict(pixels), note="onnxruntime session.run + Outputs.of"),
    ]  # fmt: skip


def observe_cases(f: Fixtures) -> list[Case]:
    """One request's observation, as the pipeline and the batcher make it: the Observation
    around serving it (request metrics, its server span) and a one-request batch's hooks."""
    ticket = f.off.pipeline.admit(V1_DOOR, read_head(client_headers(b"application/json", 10)),
                                  time.monotonic())  # fmt: skip
    pixels = f.bodies.pixels.astype(np.float32) / np.float32(255)
    outputs = Outputs.of(softmax_rows(1))
    loop = asyncio.get_running_loop()
    counter = iter(range(1 << 62))

    def observed(requests: RequestObserver, batches: Any) -> Sync:
        def one() -> None:
            with Observation(requests, ticket) as seen:
                request = QueuedRequest(pixels, 1, 0.0, 0.0, loop.create_future(), None, "1")
                batches.on_enqueued(request)
                batch = next(counter)
                batches.on_batch_start(batch, (request,), 1)
                batches.on_batch_end(batch, (request,), pixels, outputs, None, 2e-5)
                seen.status = 200

        return one

    def flush(obs: Observability) -> Sync:
        def publish() -> None:
            if obs.http is not None:
                obs.http.publish()
            obs.observer.flush()

        return publish

    off = observed(NullRequestObserver(), NullObserver())
    flushed = f"written to Prometheus once per {FLUSH_EVERY:,} requests (one 5 s interval at 5k/s)"
    metrics, sampled, unsampled = f.metrics, f.sampled, f.unsampled
    spans = _sampled_spans(f)
    return [
        Case("observe", "observation frame, all off (Observation + null hooks)", fn=off,
             note="the base the next rows include"),
        Case("observe", "metrics: the request's record (in flight, count, latency)",
             fn=observed(metrics.requests, NullObserver()), number=FLUSH_EVERY,
             finish=flush(metrics), note=flushed),
        Case("observe", "metrics: a 1-request batch's hooks (waits, sizes, outputs, drift)",
             fn=observed(NullRequestObserver(), metrics.batches), number=FLUSH_EVERY,
             finish=flush(metrics), note=flushed),
        Case("observe", "tracing on, request not sampled", fn=observed(unsampled.requests,
                                                                       unsampled.batches)),
        Case("observe", "tracing, sampled request: server + queue-wait + batch spans",
             fn=observed(sampled.requests, sampled.batches),
             note="request path only: BatchSpanProcessor to a dropping exporter"),
        Case("observe", "tracing export: OTLP encode of those 3 spans (export thread)",
             fn=lambda: encode_spans(spans).SerializeToString(),
             note="a collector's network send is not included"),
    ]  # fmt: skip


def _sampled_spans(f: Fixtures) -> list[ReadableSpan]:
    """The three spans of one sampled request, captured in memory for the encode row."""
    memory = InMemorySpanExporter()
    obs = Observability(
        f.settings.model_copy(
            update={"metrics_enabled": False, "tracing_enabled": True, "trace_sample_ratio": 1.0}
        ),
        locate_metadata(f.settings),
        span_processor=SimpleSpanProcessor(memory),
    )
    ticket = f.off.pipeline.admit(V1_DOOR, RequestHead(), time.monotonic())
    pixels = f.bodies.pixels.astype(np.float32) / np.float32(255)
    outputs = Outputs.of(softmax_rows(1))
    future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
    with Observation(obs.requests, ticket) as seen:
        request = QueuedRequest(pixels, 1, 0.0, 0.0, future, None, "1")
        obs.batches.on_enqueued(request)
        obs.batches.on_batch_start(1, (request,), 1)
        obs.batches.on_batch_end(1, (request,), pixels, outputs, None, 2e-5)
        seen.status = 200
    spans = list(memory.get_finished_spans())
    obs.shutdown_tracing()
    return spans


def encode_cases(f: Fixtures) -> list[Case]:
    b = f.bodies
    pipeline = f.off.pipeline
    contract = pipeline.contract(_model(f.off))
    limit = f.settings.max_body_bytes
    outputs = Outputs.of(softmax_rows(1))
    ids = f.off.feedback.issue_ids([int(outputs.labels[0])], [0.9], "1")
    v1_decoded = V1.decode(read_head(client_headers(b"application/json", 9)), b.v1_json,
                           contract, limit)  # fmt: skip
    v2_json = OIP.decode(read_head(client_headers(b"application/json", 9)), b.v2_json,
                         contract, limit)  # fmt: skip
    bin_head = read_head(client_headers(b"application/octet-stream", len(b.v2_binary)))
    bin_head.header_length = b"%d" % b.v2_header_length
    v2_binary = OIP.decode(bin_head, b.v2_binary, contract, limit)
    _, raw_options = decode_infer_request(pb.ModelInferRequest.FromString(b.grpc_raw), contract)
    _, typed_options = decode_infer_request(
        pb.ModelInferRequest.FromString(b.grpc_contents), contract
    )

    def http(codec: HttpCodec, decoded: Decoded) -> Sync:
        return lambda: codec.encode(outputs, decoded, contract, ids)

    def grpc(options: Any) -> Sync:
        return lambda: encode_infer_response(outputs, options, contract, ids).SerializeToString()

    return [
        Case("encode", "v1 JSON", fn=http(V1, v1_decoded)),
        Case("encode", "OIP v2 JSON", fn=http(OIP, v2_json)),
        Case("encode", "OIP v2 binary", fn=http(OIP, v2_binary)),
        Case("encode", "gRPC raw_output_contents (+ protobuf serialize)", fn=grpc(raw_options)),
        Case("encode", "gRPC contents (+ protobuf serialize)", fn=grpc(typed_options)),
    ]


def send_cases(f: Fixtures) -> list[Case]:
    contract = f.off.pipeline.contract(_model(f.off))
    outputs = Outputs.of(softmax_rows(1))
    ids = f.off.feedback.issue_ids([int(outputs.labels[0])], [0.9], "1")
    decoded = V1.decode(read_head(client_headers(b"application/json", 9)), f.bodies.v1_json,
                        contract, f.settings.max_body_bytes)  # fmt: skip
    answer = V1.encode(outputs, decoded, contract, ids)
    rid = "0" * 32
    scope = http_scope(f.bodies.v1_json, {})
    transport, flow, event = _Transport(), _Flow(), asyncio.Event()
    default_headers = [(b"date", b"Sun, 06 Dec 2026 21:00:00 GMT"), (b"server", b"uvicorn")]
    quiet = logging.getLogger("benchmarks.costs.quiet")

    async def nowhere(message: Any) -> None:
        return None

    async def through_uvicorn() -> None:
        cycle = RequestResponseCycle(
            scope, transport, flow, quiet, quiet, False, default_headers,  # type: ignore[arg-type]
            event, False, True, _noop,
        )  # fmt: skip
        await send_answer(cycle.send, answer, rid, False)  # type: ignore[arg-type]

    async def ours_only() -> None:
        await send_answer(nowhere, answer, rid, False)

    writer = _LoopbackWriter(len(answer.body) + 200)
    f.closers.append(writer.close)
    return [
        Case("send", "send_answer into a no-op send (headers + two ASGI messages)",
             afn=ours_only, baseline="async"),
        Case("send", "send_answer through uvicorn's response cycle (no socket)",
             afn=through_uvicorn, baseline="async",
             note="a new RequestResponseCycle per request, as uvicorn makes"),
        Case("send", f"one socket write of {writer.size} bytes (loopback TCP)", fn=writer.write,
             note="uvicorn writes the head and the body separately: two per response"),
    ]  # fmt: skip


def _noop() -> None:
    return None


class _LoopbackWriter:
    """A connected loopback TCP pair; ``write`` sends one response-sized message, and drains
    the reading end every 128 writes (its share of the time is amortised and small)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._payload = b"x" * size
        listener = socket.create_server(("127.0.0.1", 0))
        self._client = socket.create_connection(listener.getsockname())
        self._server, _ = listener.accept()
        listener.close()
        self._server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.setblocking(False)
        self._count = 0

    def write(self) -> None:
        self._server.send(self._payload)
        self._count += 1
        if self._count % 128 == 0:
            self._drain()

    def _drain(self) -> None:
        try:
            while self._client.recv(1 << 20):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        self._server.close()
        self._client.close()


def whole_cases(f: Fixtures) -> list[Case]:
    b = f.bodies

    def request(app: ServiceApp, state: dict[str, Any], body: bytes, path: str,
                headers: list[tuple[bytes, bytes]]) -> Async:  # fmt: skip
        receive = _receive(body)
        statuses: list[int] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def one() -> None:
            await asyncio.sleep(0)  # each request in its own loop iteration (inline compute)
            await app(http_scope(body, state, path, headers), receive, send)
            if statuses.pop() != 200:
                raise RuntimeError(f"{path}: not a 200")

        return one

    json_headers = [(b"content-type", b"application/json")]
    binary_headers = [(b"content-type", b"application/octet-stream"),
                      (b"inference-header-content-length", b"%d" % b.v2_header_length)]  # fmt: skip
    note = "ASGI app in process: no HTTP parser, no socket; the model included"
    return [
        Case("whole request", "v1 JSON, observability off",
             afn=request(f.off, f.off_state, b.v1_json, V1_PATH, json_headers), baseline="yield",
             note=note),
        Case("whole request", "v1 JSON, defaults (metrics + tracing at 0.01)",
             afn=request(f.defaults, f.defaults_state, b.v1_json, V1_PATH, json_headers),
             baseline="yield", note=note),
        Case("whole request", "OIP v2 binary, observability off",
             afn=request(f.off, f.off_state, b.v2_binary, V2_PATH, binary_headers),
             baseline="yield", note=note),
        Case("whole request", "gRPC ModelInfer raw, observability off", afn=grpc_call(f),
             baseline="yield",
             note="the registered handler in process (protobuf parse and serialize included): "
             "no HTTP/2, no gRPC core"),
    ]  # fmt: skip


class _CallContext:
    """The parts of a ``grpc.aio`` servicer context the ModelInfer handler reads."""

    def __init__(self) -> None:
        self._metadata = (("user-agent", "grpc-python/1.85.3 grpc-c/52.0.0 (linux; chttp2)"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None  # no deadline: the default timeout

    async def abort(self, code: Any, details: str, trailing_metadata: Any = ()) -> None:
        raise RuntimeError(f"ModelInfer aborted: {code} {details}")


def grpc_call(f: Fixtures) -> Async:
    """One ModelInfer through the servicer's registered handler (the access check, the door,
    the pipeline's stages, the codec), as the gRPC server calls it once it has the bytes."""
    from serving.grpc.service import InferenceServicer  # late: only this row needs grpc

    handler = InferenceServicer(f.off.pipeline).handlers()["ModelInfer"]
    behaviour = handler.unary_unary
    # No deserializer: the handler parses the bytes itself (a corrupt message is then its
    # INVALID_ARGUMENT, not grpcio's UNKNOWN), so the parse is inside ``behaviour``.
    deserialize, serialize = handler.request_deserializer, handler.response_serializer
    assert behaviour is not None
    assert serialize is not None
    context: Any = _CallContext()  # duck-typed: the handler reads only these methods
    data = f.bodies.grpc_raw

    async def one() -> None:
        await asyncio.sleep(0)
        response = await behaviour(data if deserialize is None else deserialize(data), context)
        serialize(response)

    return one


# ---------------------------------------------------------------------- the rollout
#: The rollout group: each touch point of the rollout wiring on the request path
#: (docs/rollout.md, "How it is wired"), with no rollout running against the same operation
#: with one running. "Idle": what a worker spends in the background with no traffic.
ROLLOUT = "rollout"
IDLE = "idle"
#: rollout.toml of the rollout fixtures (two copies of the model): the judge decides nothing
#: while the table runs (no evaluation for an hour, a billion rows before a promotion), so the
#: rollout runs from the first row to the last; ``check_rollouts`` verifies it before and after.
ROLLOUT_POLICY = """mode = "{mode}"
canary_share = 0.5
shadow_share = 1.0
min_samples = 1000000000
evaluation_interval_s = 3600
"""
#: The canary rows' X-Client-ID (hashed with the rollout's salt at each admission).
CLIENT_ID = b"costs-benchmark-client-0001"
#: What the rollout added to the header pass (serving/pipeline/head.py, ``read_head``).
CLIENT_ID_BRANCH = '        elif name == b"x-client-id":\n            head.client_id = value\n'
#: For scale beside the idle workers: a bare uvloop running only the event-loop lag probe
#: every worker runs (serving/transport/loop_lag.py, a timer every 10 ms).
LAG_PROBE = """
import asyncio, uvloop
from serving.transport.loop_lag import LoopLag
async def main():
    LoopLag().start()
    await asyncio.Event().wait()
uvloop.run(main())
"""
LAG_PROBE_NAME = "for scale: a bare uvloop running only the event-loop lag probe (LoopLag)"
#: Seconds an idle server runs after /readyz before its CPU is counted (start-up's tail).
IDLE_SETTLE_S = 2.0
#: The idle servers: the defaults, and the same without the version poll (its share).
IDLE_SERVERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("idle worker, default settings", {}),
    ("idle worker, version poll off (SERVING_MODEL_POLL_INTERVAL_S=0)",
     {"SERVING_MODEL_POLL_INTERVAL_S": "0"}),
)  # fmt: skip


def read_head_before_rollout() -> Callable[[Sequence[tuple[bytes, bytes]]], RequestHead]:
    """``read_head`` as it was before the rollout: compiled from its own source minus the
    X-Client-ID branch, so that the branch's price is one row minus the other (raises if the
    source no longer has that branch exactly once: the row would then price nothing)."""
    source = textwrap.dedent(inspect.getsource(head_module.read_head))
    if source.count(CLIENT_ID_BRANCH) != 1:
        raise RuntimeError("serving/pipeline/head.py: read_head's X-Client-ID branch changed")
    namespace = dict(vars(head_module))
    exec(compile(source.replace(CLIENT_ID_BRANCH, ""), head_module.__file__, "exec"), namespace)
    before: Callable[[Sequence[tuple[bytes, bytes]]], RequestHead] = namespace["read_head"]
    return before


class ConstantModel:
    """A batcher's model that answers ``outputs`` (one row) at no cost: the compute rows
    compare what the pipeline does with an answer with and without a second opinion."""

    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs

    def __call__(self, pixels: npt.NDArray[np.float32]) -> Outputs:
        return self.outputs


@dataclass
class Rollouts:
    """The apps with a rollout running, beside ``Fixtures.off`` (mode replace, one version:
    no rollout), all with observability off."""

    canary: ServiceApp
    shadow: ServiceApp
    #: Like ``off`` (no rollout), but with its rollout store in a file as ``python -m serving``
    #: makes it (``off``'s is in memory), for the version poll's rows; and, like the canary's,
    #: no batch timed yet, for the admission rows (admission takes the fastest of the last 64
    #: timed batches: the same state on both sides).
    plain: ServiceApp
    #: What the shadow's stable batcher answered for one digit and for 32 rows of it, the
    #: candidate's second opinion included (the attached SecondPredict, through ``submit``).
    second: Outputs
    second32: Outputs
    #: Batchers answering ``second`` without and with its second opinion (``ConstantModel``).
    alone: Batcher
    paired: Batcher


def rollout_service(app: ServiceApp) -> RolloutService:
    rollout = app.service.rollout
    if not isinstance(rollout, RolloutService):
        raise RuntimeError(f"the app's rollout is {rollout!r}, not a RolloutService")
    return rollout


def two_versions(source: Path, model_dir: Path, mode: str) -> None:
    """``model_dir/{1,2}``: two copies of the version folder ``source``, and a rollout.toml."""
    for version in (1, 2):
        target = model_dir / str(version)
        shutil.copytree(source, target)
        metadata = target / "metadata.json"
        content = json.loads(metadata.read_text())
        content["version"] = version
        metadata.write_text(json.dumps(content, indent=1))
    (model_dir / POLICY_FILE).write_text(ROLLOUT_POLICY.format(mode=mode))


def check_rollouts(f: Fixtures, r: Rollouts) -> None:
    """Raise unless each rollout row's fixture is what the row is named for: no rollout in
    ``off`` and ``plain``, a canary splitting its clients, a shadow behind stable's batches,
    and the admission rows' batchers in the same state."""
    problems = []
    for name, app in (("off", f.off), ("plain", r.plain)):
        state = rollout_service(app).state
        if app.service.versions_set.route is not None or (state is not None and state.running):
            problems.append(f"the {name} app runs a rollout ({state})")
    for app, mode in ((r.canary, "canary"), (r.shadow, "shadow")):
        state = rollout_service(app).state
        if state is None or not state.running or state.mode != mode:
            problems.append(f"the {mode} app runs no {mode} rollout ({state})")
    route = r.canary.service.versions_set.route
    if not isinstance(route, CanaryRoute) or not 0 < route.share < 1:
        problems.append(f"the canary app has no route splitting its clients ({route!r})")
    if r.shadow.service.versions_set.route is not None:
        problems.append("the shadow app routes requests to the candidate")
    for name, app in (("plain", r.plain), ("canary", r.canary)):
        served = app.service.versions_set.served.values()
        if any(s.batcher.throughput.fastest_idle_s for s in served):
            problems.append(f"the {name} app timed batches: its admission is not comparable")
    for outputs, rows in ((r.second, 1), (r.second32, BATCH)):
        second = outputs.second
        if outputs.rows != rows or second is None or second.outputs is None:
            problems.append(f"the shadow's batcher answered {rows} rows without a second opinion")
    if problems:
        raise RuntimeError("rollout fixtures: " + "; ".join(problems))


@asynccontextmanager
async def rollout_fixtures(f: Fixtures) -> AsyncIterator[Rollouts]:
    """The canary, shadow and plain apps, running; checked on entry and on exit."""
    settings = f.settings.model_copy(
        update={"metrics_enabled": False, "tracing_enabled": False, "model_poll_interval_s": 0}
    )
    source = resolve(settings.model_repository, settings.model_name).path
    pixels = f.bodies.pixels.astype(np.float32) / np.float32(255)
    with tempfile.TemporaryDirectory(prefix="costs-rollout-") as scratch:
        work = Path(scratch)
        apps: dict[str, ServiceApp] = {}
        async with AsyncExitStack() as stack:
            for mode in ("canary", "shadow"):
                two_versions(source, work / mode / settings.model_name, mode)
                apps[mode] = create_app(settings.model_copy(update={
                    "model_repository": work / mode, "rollout_store": work / f"{mode}.sqlite3",
                }))  # fmt: skip
                await stack.enter_async_context(running(apps[mode]))
            # The plain app polls when the row asks it to (its own poller is off, as above).
            plain = create_app(
                settings.model_copy(update={"rollout_store": work / "plain.sqlite3"})
            )
            await stack.enter_async_context(running(plain))
            stable = apps["shadow"].service.batcher
            assert stable is not None
            deadline = time.monotonic() + 60
            second = await stable.submit(pixels, deadline)
            second32 = await stable.submit(np.repeat(pixels, BATCH, axis=0), deadline)
            alone = batcher(ConstantModel(second._replace(second=None)), 8)
            paired = batcher(ConstantModel(second), 8)
            for started in (alone, paired):
                await started.start()
                stack.push_async_callback(started.stop)
            found = Rollouts(apps["canary"], apps["shadow"], plain, second, second32, alone, paired)
            check_rollouts(f, found)
            yield found
            check_rollouts(f, found)  # nothing decided meanwhile: every row ran as named


def rollout_cases(f: Fixtures, r: Rollouts) -> list[Case]:
    """Every touch point of the rollout wiring on the request path, with no rollout (the
    ``off`` and ``plain`` apps: mode replace, one version) and with one running (two copies of
    the model, in canary or shadow)."""
    body = f.bodies.v1_json
    seven = client_headers(b"application/json", len(body))
    head, client_head = read_head(seven), read_head([*seven, (b"x-client-id", CLIENT_ID)])
    before = read_head_before_rollout()
    plain, canary = r.plain.pipeline, r.canary.pipeline
    off = f.off.pipeline
    context: Any = _CallContext()  # duck-typed: metadata() reads invocation_metadata() only
    pixels = f.bodies.pixels.astype(np.float32) / np.float32(255)
    far = time.monotonic() + 1e9  # the compute rows' tickets never expire
    ticket = off.admit(V1_DOOR, head, time.monotonic())
    alone = dataclasses.replace(ticket, batcher=r.alone, deadline=far)
    paired = dataclasses.replace(ticket, batcher=r.paired, deadline=far)

    def compute(admitted: Ticket) -> Async:
        async def one() -> None:
            await asyncio.sleep(0)  # computed inline: one request per loop iteration
            await off.compute(admitted, pixels)

        return one

    counts = [1] * BATCH
    single, single32 = r.second._replace(second=None), r.second32._replace(second=None)
    loop = asyncio.get_running_loop()

    def queued(rows: int) -> tuple[QueuedRequest, ...]:
        return tuple(QueuedRequest(pixels, 1, 0.0, 0.0, loop.create_future(), None, "1")
                     for _ in range(rows))  # fmt: skip

    one_request, requests32 = queued(1), queued(BATCH)
    inputs32 = np.repeat(pixels, BATCH, axis=0)
    assert r.second.second is not None
    seconds = 2 * r.second.second.seconds  # the batch's time held both runs, about evenly
    unattached = f.off.service.observer  # a batcher's observer when nothing is attached
    shadow = rollout_service(r.shadow)
    recording = RecordingObserver(r.shadow.service.observer, shadow, Role.STABLE)

    def batch_end(observer: BatchObserver, requests: tuple[QueuedRequest, ...],
                  inputs: npt.NDArray[np.float32], outputs: Outputs) -> Sync:  # fmt: skip
        return lambda: observer.on_batch_end(1, requests, inputs, outputs, None, seconds)

    state = shadow.state
    assert state is not None
    assert state.stable is not None
    assert state.candidate is not None
    now = int(time.time())
    label_alone = Outcome([Labelled(b"\0" * 13, now, 3, 3, int(f.off.service.versions()[0]))],
                          0, 0)  # fmt: skip
    label_pair = Outcome([Labelled(b"\1" * 13, now, 3, 3, state.stable, 3, state.candidate)], 0, 0)
    off_rollout = rollout_service(f.off)
    idle_versions, idle_rollout = r.plain.service.versions_set, rollout_service(r.plain)
    present = idle_versions.present()

    async def poll() -> None:
        await idle_versions.refresh()

    interval = f.settings.model_poll_interval_s
    return [
        Case(ROLLOUT, "header pass, 7 headers: read_head as it is", fn=lambda: read_head(seven),
             note="no rollout or one: one more name compared per header (next row)"),
        Case(ROLLOUT, "header pass, 7 headers: read_head minus its X-Client-ID branch",
             fn=lambda: before(seven), note="compiled from read_head's source without the branch"),
        Case(ROLLOUT, "gRPC: the X-Client-ID metadata lookup (every ModelInfer)",
             fn=lambda: metadata(context, "x-client-id"),
             note="no rollout or one: one scan of the call's metadata (here 1 entry)"),
        Case(ROLLOUT, "admission, no rollout (Pipeline.admit: route is None)",
             fn=lambda: plain.admit(V1_DOOR, head, time.monotonic()),
             note="as the arrive row: no batch timed yet, like the canary's"),
        Case(ROLLOUT, "admission, canary running: X-Client-ID hashed (CanaryRoute.pick)",
             fn=lambda: canary.admit(V1_DOOR, client_head, time.monotonic()),
             note="share 0.5: BLAKE2b of the salt and the client id"),
        Case(ROLLOUT, "admission, canary running: no client id (a random draw)",
             fn=lambda: canary.admit(V1_DOOR, head, time.monotonic())),
        Case(ROLLOUT, "compute's answer, no rollout: second is None, format 1 id",
             afn=compute(alone), baseline="yield",
             note="Pipeline.compute over a batcher answering at once (its own ~6 µs included)"),
        Case(ROLLOUT, "compute's answer, second opinion: format 2 id (issue_pairs)",
             afn=compute(paired), baseline="yield",
             note="the same answer with the candidate's (shadow: SecondPredict's output)"),
        Case(ROLLOUT, f"split of a {BATCH}-request batch, no rollout, per request",
             fn=lambda: split(single32, counts), requests=BATCH, note="second is None"),
        Case(ROLLOUT, f"split of a {BATCH}-request batch, second opinion, per request",
             fn=lambda: split(r.second32, counts), requests=BATCH,
             note="each slice slices the second outputs too"),
        Case(ROLLOUT, "batch observer, no rollout: nothing attached, 1-row batch",
             fn=batch_end(unattached, one_request, pixels, single),
             note="the service's observer (observability off)"),
        Case(ROLLOUT, "shadow: RecordingObserver.on_batch_end, 1-row batch",
             fn=batch_end(recording, one_request, pixels, r.second),
             note="for scale (rollout running): record_pair, per batch"),
        Case(ROLLOUT, f"shadow: RecordingObserver.on_batch_end, {BATCH}-row batch, per request",
             fn=batch_end(recording, requests32, inputs32, r.second32), requests=BATCH,
             note="for scale (rollout running): vectorised over the rows"),
        Case(ROLLOUT, "feedback listener, no rollout (RolloutService.on_feedback, 1 label)",
             fn=lambda: off_rollout.on_feedback(label_alone),
             note="per /v1/feedback call: a lock, no recorder"),
        Case(ROLLOUT, "feedback listener, shadow: a format 2 label scores both",
             fn=lambda: shadow.on_feedback(label_pair)),
        Case(IDLE, "version poll, no rollout (VersionSet.refresh)", afn=poll, baseline="async",
             note=f"per poll, every model_poll_interval_s = {interval:g} s; one thread hop"),
        Case(IDLE, "its rollout part (RolloutService.choose)",
             fn=lambda: idle_rollout.choose(present),
             note="rollout.toml looked for, fingerprints, one SQLite transaction (a file)"),
    ]  # fmt: skip


# ---------------------------------------------------------------------- derived rows
#: Derived rows of the rollout group: (name, the row with it, the row without it), by prefix.
ROLLOUT_DIFFERENCES = (
    ("no rollout: the X-Client-ID branch of the header pass, 7 headers",
     "header pass, 7 headers: read_head as", "header pass, 7 headers: read_head minus"),
    ("canary: the route at admission, by client id",
     "admission, canary running: X-Client-ID", "admission, no rollout"),
    ("canary: the route at admission, random draw",
     "admission, canary running: no client", "admission, no rollout"),
    ("rollout: a format 2 id instead of format 1, 1 row",
     "compute's answer, second opinion", "compute's answer, no rollout"),
    ("rollout: the second outputs in the split, per request",
     f"split of a {BATCH}-request batch, second", f"split of a {BATCH}-request batch, no rollout"),
    ("shadow: recording a 1-row batch",
     "shadow: RecordingObserver.on_batch_end, 1-row", "batch observer, no rollout"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Derived:
    name: str
    us: float
    how: str


def derived(costs: Sequence[Cost]) -> list[Derived]:
    """Rows computed from measured ones (named in ``how``)."""
    by = {(c.stage, c.name): c.us for c in costs}

    def get(stage: str, prefix: str) -> float | None:
        return next((us for (s, n), us in by.items() if s == stage and n.startswith(prefix)), None)

    out = []
    base = get("observe", "observation frame")
    sampled, unsampled = get("observe", "tracing, sampled"), get("observe", "tracing on, request")
    encode = get("observe", "tracing export")
    if None not in (base, sampled, unsampled, encode):
        assert base is not None
        assert sampled is not None
        assert unsampled is not None
        assert encode is not None
        price = (unsampled - base) + DEFAULT_SAMPLE_RATIO * (sampled - unsampled + encode)
        out.append(Derived(
            f"tracing at the default ratio {DEFAULT_SAMPLE_RATIO:g}, per request", price,
            f"(unsampled - frame) + {DEFAULT_SAMPLE_RATIO:g} x (sampled - unsampled + encode)",
        ))  # fmt: skip
    record, hooks = get("observe", "metrics: the request"), get("observe", "metrics: a 1-request")
    if record is not None and hooks is not None and base is not None:
        out.append(Derived("metrics, per request (record + batch hooks)",
                           record + hooks - 2 * base,
                           "the two metrics rows - 2 x frame row"))  # fmt: skip
    batch32, tasks = get("submit/batch", f"batch {BATCH}:"), get("submit/batch", "asyncio:")
    if batch32 is not None and tasks is not None:
        out.append(Derived(f"submit/batch at {BATCH}, net of the tasks", batch32 - tasks,
                           "batch-32 row - tasks row"))  # fmt: skip
    parts = [
        get("arrive", "header pass (read_head)"),
        get("arrive", "whole arrive"),
        get("read", "body read"),
        get("decode", "v1 JSON"),
        get("submit/batch", "batch 1, idle"),
        get("result", "the model itself"),
        get("result", "prediction id signing (BLAKE2b"),
        get("encode", "v1 JSON"),
        get("send", "send_answer through uvicorn"),
        base,
    ]
    whole = get("whole request", "v1 JSON, observability off")
    if None not in parts:
        total = sum(p for p in parts if p is not None)
        detail = f"; the whole v1 JSON request in process: {whole:.1f} µs" if whole else ""
        out.append(Derived(
            "sum of the v1 JSON stages, observability off", total,
            "header pass + arrive + body read + decode + batch 1 inline + model + id + encode + "
            f"send (uvicorn) + observation frame{detail}",
        ))  # fmt: skip
    for name, with_it, without in ROLLOUT_DIFFERENCES:
        a, b = get(ROLLOUT, with_it), get(ROLLOUT, without)
        if a is not None and b is not None:
            out.append(Derived(name, a - b, f"rollout rows '{with_it}...' - '{without}...'"))
    return out


# ---------------------------------------------------------------------- report
def markdown(
    costs: Sequence[Cost],
    extra: Sequence[Derived],
    header: str,
    idle: Sequence[IdleCpu] = (),
    poll_interval_s: float = 5.0,
) -> str:
    """The table of requests' costs, the derived rows, then the idle background (the rows of
    stage ``idle``, per poll, and the idle servers' CPU)."""
    lines = [
        header,
        "",
        "| stage | what | µs per request | spread | note |",
        "|---|---|---:|---:|---|",
    ]
    lines += [f"| {c.stage} | {c.name} | {c.us:.2f} | {c.spread:.0%} | {c.note} |" for c in costs
              if c.stage != IDLE]  # fmt: skip
    if extra:
        lines += ["", "| derived | µs per request | from |", "|---|---:|---|"]
        lines += [f"| {d.name} | {d.us:.2f} | {d.how} |" for d in extra]
    polls = [c for c in costs if c.stage == IDLE]
    if polls or idle:
        lines += ["", IDLE_HOW, "", "| idle, no traffic | each | per second | note |",
                  "|---|---:|---:|---|"]  # fmt: skip
        per_s = 1 / poll_interval_s if poll_interval_s > 0 else 0.0
        lines += [f"| {c.name} | {c.us:.1f} µs (spread {c.spread:.0%}) | {c.us * per_s:.1f} µs "
                  f"| {c.note} |" for c in polls]  # fmt: skip
        lines += [f"| {i.name} | | {i.ms_per_s:.2f} ms | over {i.seconds:.1f} s; "
                  f"/proc/<pid>/stat says {i.stat_ms_per_s:.1f} ms (10 ms ticks) |"
                  for i in idle]  # fmt: skip
    return "\n".join(lines) + "\n"


IDLE_HOW = (
    "Idle background: what a worker spends with no traffic and no rollout. The poll rows are "
    "timed like the rows above, per poll; the idle workers are `python -m serving` processes "
    "(default settings but gRPC off; one with the version poll off) started together and left "
    "alone after /readyz, their CPU (each thread's /proc/<pid>/task/<tid>/schedstat, in ns) "
    "counted over the same window, per second of it, beside a bare uvloop running only the "
    "event-loop lag probe every worker runs. Besides the version poll and the rollout's judge "
    "task (one wake-up a second), a worker's idle CPU holds its other timers: the lag probe "
    "(100 a second), metrics sampling."
)


@dataclass(frozen=True, slots=True)
class IdleCpu:
    """The CPU an idle ``python -m serving`` worker used, per second of wall-clock time."""

    name: str
    #: ms of CPU per s, from each thread's schedstat (ns).
    ms_per_s: float
    #: The same from /proc/<pid>/stat's utime + stime (10 ms ticks): a cross-check.
    stat_ms_per_s: float
    seconds: float


def cpu_ns(pid: int) -> int:
    """CPU time so far of ``pid`` and its children in ns: the sum of each thread's
    ``/proc/<pid>/task/<tid>/schedstat`` (``/proc/<pid>/stat`` counts 10 ms ticks, too coarse
    for a few ms per second; a thread that ended meanwhile is missing from the sum)."""
    total = 0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        for path in Path(f"/proc/{proc.pid}/task").glob("*/schedstat"):
            try:
                total += int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):  # the thread ended
                continue
    return total


def idle_cpu(models: Path, model_name: str, seconds: float) -> list[IdleCpu]:
    """Each of ``IDLE_SERVERS`` as a ``python -m serving`` process, and ``LAG_PROBE`` for
    scale, all started at once and measured over the same ``seconds`` with no request (none:
    ``seconds`` <= 0)."""
    if seconds <= 0:
        return []
    command = [*SERVE, "--model-repository", str(models), "--model-name", model_name]
    with tempfile.TemporaryDirectory(prefix="costs-idle-") as scratch, ExitStack() as stack:
        pids = [
            stack.enter_context(ServerProcess(Path(scratch) / f"idle-{i}.log", args=command,
                                              env=env, ready_timeout_s=120)).process.pid
            for i, (_, env) in enumerate(IDLE_SERVERS)
        ]  # fmt: skip
        probe = subprocess.Popen([sys.executable, "-c", LAG_PROBE])
        stack.callback(probe.wait)
        stack.callback(probe.terminate)
        pids.append(probe.pid)
        time.sleep(IDLE_SETTLE_S)
        if probe.poll() is not None:
            raise RuntimeError(f"the lag probe exited with {probe.returncode}")
        before = [(cpu_ns(pid), cpu_seconds_of(pid)) for pid in pids]
        started = time.monotonic()
        time.sleep(seconds)
        after = [(cpu_ns(pid), cpu_seconds_of(pid)) for pid in pids]
        elapsed = time.monotonic() - started
    names = [name for name, _ in IDLE_SERVERS] + [LAG_PROBE_NAME]
    return [
        IdleCpu(name, (a[0] - b[0]) / 1e6 / elapsed, (a[1] - b[1]) * 1e3 / elapsed, elapsed)
        for name, b, a in zip(names, before, after, strict=True)
    ]


HOW_TO_READ = (
    "How to read it: each row is one stage or feature of the request path, run alone in a "
    "tight loop on one real MNIST digit with the service's own functions; µs per request is "
    "the fastest of the repeats with the empty loop subtracted (noise only adds time), the "
    "spread is (median - fastest) / fastest. Rows are not additive to the cost under load: "
    "they miss cache misses, the kernel's socket work and the inference thread's contention "
    "(compare the derived sum with the 'whole request' rows, and those with the closed-loop "
    "CPU per request). A new feature adds a row: its price is its row. The rollout rows pair "
    "each touch point of the rollout wiring with no rollout running (the default app: mode "
    "replace, one version) against the same operation with one running (a canary or a shadow "
    "of a copy of the model, checked before and after the rows)."
)


async def run_cases(timer: Timer, cases: Sequence[Case], only: str) -> list[Cost]:
    """The cases whose "stage: name" has ``only`` in it, measured and printed one by one."""
    costs = []
    for case in cases:
        if only and only not in f"{case.stage}: {case.name}":
            continue
        cost = await timer.measure(case)
        costs.append(cost)
        print(
            f"  {cost.stage:<14} {cost.name:<66} {cost.us:8.2f} µs "
            f"(spread {cost.spread:.0%}, {cost.number} x {cost.repeats})",
            flush=True,
        )
    return costs


async def measure(args: argparse.Namespace) -> list[Cost]:
    settings = Settings(model_repository=args.models, model_name=args.model_name)
    images, _ = load_digits(mnist_dir(args.mnist_dir), 1)
    timer = Timer(args.target_s, args.repeat)
    await timer.calibrate()
    costs: list[Cost] = []
    async with AsyncExitStack() as stack:
        f = await fixtures(stack, settings, images[:1])
        # Closed on the way out even when a row fails (a socket left open warns in tests).
        stack.callback(_release, f)
        # Warm every path once (first calls build caches: contracts, codecs' decoders...).
        pixels = images[:1].astype(np.float32) / np.float32(255)
        for _ in range(3):
            deadline = time.monotonic() + 60
            await asyncio.gather(*(f.inline.submit(pixels, deadline) for _ in range(4)))
        groups = (arrive_cases, batch_cases, decode_cases, result_cases, observe_cases,
                  encode_cases, send_cases, whole_cases)  # fmt: skip
        for group in groups:
            costs += await run_cases(timer, group(f), args.only)
        # Last: the rollout apps' judge tasks wake once a second, which the other rows need
        # not share. Their fixtures are checked before and after these rows.
        rollouts = await stack.enter_async_context(rollout_fixtures(f))
        costs += await run_cases(timer, rollout_cases(f, rollouts), args.only)
    return costs


def _release(f: Fixtures) -> None:
    for obs in (f.metrics, f.sampled, f.unsampled):
        obs.shutdown_tracing()
    for close in f.closers:
        close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--model-name", default="mnist")
    parser.add_argument("--mnist-dir", default=None)
    # Many short repeats rather than a few long ones: on a shared machine the fastest of 25
    # windows of 10 ms is far more often an undisturbed one than the fastest of 5 of 50 ms.
    parser.add_argument("--target-s", type=float, default=0.01, help="seconds per repeat")
    parser.add_argument("--repeat", type=int, default=25, help="repeats per case (min kept)")
    parser.add_argument("--only", default="", help="cases whose 'stage: name' has this text")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--idle-s",
        type=float,
        default=10.0,
        help="seconds the idle servers' CPU is counted (0: no idle servers)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    try:
        import uvloop

        costs = uvloop.run(measure(args))
    except ImportError:  # pragma: no cover  (the serve extra has uvloop)
        costs = asyncio.run(measure(args))
    extra = derived(costs)
    idle = idle_cpu(args.models, args.model_name, args.idle_s)
    for i in idle:
        print(f"  {i.name:<81} {i.ms_per_s:8.2f} ms CPU per s", flush=True)
    poll_s = Settings(
        model_repository=args.models, model_name=args.model_name
    ).model_poll_interval_s
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    header = "\n".join([
        f"## Cost table ({dt.date.today().isoformat()})",
        "",
        f"`python -m benchmarks.costs --models {args.models}` ({time.monotonic() - started:.0f} "
        f"s; {args.repeat} repeats of >= {args.target_s:g} s per case; Python "
        f"{platform.python_version()}, uvloop; CPUs {affinity}).",
        "",
        HOW_TO_READ,
    ])  # fmt: skip
    text = markdown(costs, extra, header, idle, poll_s)
    print()
    print(text)
    payload = {"costs": [asdict(c) for c in costs], "derived": [asdict(d) for d in extra],
               "idle_cpu": [asdict(i) for i in idle], "markdown": text}  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=1))
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"{dt.date.today().isoformat()}-costs"
        (args.out / f"{stem}.md").write_text(text)
        (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.out / stem}.md and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
