"""Closed-loop sweep points driven by h2load: gRPC ModelInfer over h2c, and HTTP/1.1 posts.

Why h2load for gRPC: a Python gRPC client cannot load the service on the one core the generator
gets (each call costs it more CPU than the server spends), and wrk speaks only HTTP/1.1. h2load
(C++, nghttp2) speaks HTTP/2 and posts a pre-built body: a gRPC call is an HTTP/2 POST to
``/<package.Service>/<Method>`` with ``content-type: application/grpc`` and ``te: trailers``
whose body is the length-prefixed serialized request (benchmarks/h2load.py). The same generator
posts the HTTP v2 binary body over HTTP/1.1, so gRPC and HTTP can be compared with one
generator as well as against wrk's rows.

What h2load cannot see: a gRPC call's outcome. Its grpc-status travels in the HTTP/2 trailers
and the HTTP status is 200 either way. So every sweep point is checked: :func:`verify` first
sends the same bytes once with grpcio (a real client) and learns the size of a successful
response frame; a failed call is trailers-only (no DATA frame), so a run whose DATA bytes fall
short of ``answered x that size`` had failures, counted as errors. (With metrics on, the
server's ``inference_http_requests_total{protocol="grpc",status="200"}`` tells the same; the
tests check both agree.)

Runs are bounded by a request count (``-n``), never by ``-D`` (benchmarks/h2load.py says why):
a short probe at the same concurrency measures the rate, then ``rate x seconds`` requests.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt

from benchmarks import h2load
from benchmarks.openloop import percentile
from benchmarks.wrk import LoadResult
from serving.grpc.generated import grpc_service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
#: The shortest measured run, whatever the probe says (a slow server still gets a real sample).
MIN_REQUESTS = 200


def infer_request(pixels: npt.NDArray[np.uint8], raw: bool = True) -> pb.ModelInferRequest:
    """A ModelInfer of FP32 pixels / 255 asking for both outputs: in ``raw_input_contents``
    (what tritonclient sends by default) or in the typed ``contents``."""
    scaled = (pixels.reshape(-1, 784).astype(np.float32) / np.float32(255)).astype("<f4")
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="pixels", datatype="FP32", shape=[scaled.shape[0], 784]
    )
    request = pb.ModelInferRequest(
        model_name="mnist",
        inputs=[tensor],
        outputs=[
            pb.ModelInferRequest.InferRequestedOutputTensor(name=name)
            for name in ("probabilities", "label")
        ],
    )
    if raw:
        request.raw_input_contents.append(scaled.tobytes())
    else:
        request.inputs[0].contents.fp32_contents.extend(scaled.ravel().tolist())
    return request


@dataclass(frozen=True, slots=True)
class Verified:
    """What a real client got for the message h2load will send."""

    #: Bytes of a successful response as h2load counts it (5-byte prefix + message).
    response_frame_bytes: int
    labels: tuple[int, ...]


def verify(target: str, message: bytes, timeout_s: float = 10.0) -> Verified:
    """Send ``message`` once to ``target`` (host:port) with grpcio, exactly these bytes; raises
    ``grpc.RpcError`` unless the call is OK."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(MODEL_INFER, _identity, _identity)
        raw: bytes = call(message, timeout=timeout_s)
    response = pb.ModelInferResponse.FromString(raw)
    labels = next(
        (
            np.frombuffer(response.raw_output_contents[i], dtype="<i8")
            for i, output in enumerate(response.outputs)
            if output.name == "label"
        ),
        np.array([], dtype=np.int64),
    )
    return Verified(5 + len(raw), tuple(int(x) for x in labels))


def _identity(data: bytes) -> bytes:
    return data


@dataclass(frozen=True, slots=True)
class Shape:
    """One sweep point's load: gRPC (h2c) or HTTP/1.1, ``clients`` connections with
    ``streams`` requests in flight on each (gRPC; HTTP/1.1 has one)."""

    url: str
    body: bytes
    grpc: bool
    clients: int
    streams: int = 1
    headers: tuple[tuple[str, str], ...] = ()
    #: gRPC: the size of a successful response (from :func:`verify`), to count failures.
    response_frame_bytes: int = 0

    def run(self, requests: int, cpu: int | None) -> tuple[h2load.Run, float]:
        """One run of ``requests``; the run and the generator's CPU seconds."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        headers = dict(self.headers)
        if self.grpc:
            done = h2load.grpc_closed_loop(
                self.url, self.body, self.clients, requests, cpu, self.streams, headers
            )
        else:
            done = h2load.closed_loop(self.url, self.body, self.clients, requests, headers, cpu)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return done, cpu_s


def load_result(shape: Shape, done: h2load.Run, generator_cpu_s: float) -> LoadResult:
    """A run in the sweep's form: requests answered 200 (and, for gRPC, with a response
    message), their latency percentiles, every other outcome an error."""
    ok = [o.latency_s for o in done.outcomes if o.status == 200]
    failed = h2load.grpc_failures(done, shape.response_frame_bytes) if shape.grpc else 0
    errors = len(done.outcomes) - len(ok) + done.timeouts + done.errors + failed
    seconds = done.measured_s or done.elapsed_s
    return LoadResult(
        requests=len(ok) - failed,
        seconds=seconds,
        errors=errors,
        p50_ms=percentile(ok, 50) * 1000,
        p95_ms=percentile(ok, 95) * 1000,
        p99_ms=percentile(ok, 99) * 1000,
        generator_cpu_s=generator_cpu_s,
    )


def requests_for(shape: Shape, seconds: float, cpu: int | None) -> int:
    """How many requests last about ``seconds`` at this shape: from a short probe (~0.3 s)."""
    probe = max(MIN_REQUESTS // 2, 20 * shape.clients * shape.streams)
    done, _ = shape.run(probe, cpu)
    elapsed = done.measured_s or done.elapsed_s
    rate = len(done.outcomes) / elapsed if elapsed > 0 else 0.0
    return max(MIN_REQUESTS, int(rate * seconds))


def measure(shape: Shape, seconds: float, cpu: int | None) -> LoadResult:
    """A probe, then a run of about ``seconds``: the point's load."""
    requests = requests_for(shape, seconds, cpu)
    done, generator_cpu_s = shape.run(requests, cpu)
    return load_result(shape, done, generator_cpu_s)
