"""The Open Inference Protocol over gRPC for the load test: the official client
(``tritonclient.grpc``) wrapped the way Locust's documentation wraps a custom client ("Testing
other systems/protocols"): each call is timed and reported with ``events.request`` (request
type, name, response time, response length, exception), so the p95 gate and the error rate
cover gRPC exactly as they cover HTTP.

Two things Locust needs from a gRPC client, and why:

* gevent: Locust runs every user in a greenlet of one OS thread; grpcio's blocking calls would
  stop them all. ``grpc.experimental.gevent.init_gevent()`` (once per process, after gevent's
  monkey-patching, before any channel exists) makes grpcio cooperate with gevent.
* imported late: ``tritonclient`` is in the dev dependencies, not Locust's; HTTP runs do not
  need it.

The request is what tritonclient sends by default: FP32 ``pixel / 255`` in
``raw_input_contents``, both outputs asked for. A call fails unless its status is OK and its
answer holds ``probabilities`` and ``label`` for every digit, the label being the argmax.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from loadtest.data import Sample, decode_binary_body
from loadtest.schema import NUM_CLASSES, SchemaError

#: Triton's and KServe's default gRPC port, the service's too (SERVING_GRPC_PORT).
DEFAULT_PORT = 8001
MODEL = "mnist"
INPUT = "pixels"
OUTPUTS = ("probabilities", "label")
#: The request name in Locust's statistics (request type "grpc").
REQUEST_NAME = "ModelInfer raw"
_gevent_ready = False
#: Clients not closed yet, closed by :func:`close_all` before the process exits.
_open: set[GrpcInferClient] = set()


def init_gevent() -> None:
    """Make grpcio gevent-friendly in this process (once; before any channel is created)."""
    global _gevent_ready
    if not _gevent_ready:
        import grpc.experimental.gevent as grpc_gevent

        grpc_gevent.init_gevent()
        _gevent_ready = True


def grpc_target(explicit: str, host: str | None) -> str:
    """``host:port`` of the gRPC port: ``explicit`` if given, else the HTTP host's name with
    port 8001."""
    if explicit:
        return explicit
    name = urlsplit(host or "").hostname or "127.0.0.1"
    return f"{name}:{DEFAULT_PORT}"


@dataclass(frozen=True, slots=True)
class GrpcSample:
    """One prepared request: ``(n, 784)`` FP32 pixels / 255 and the true labels."""

    pixels: npt.NDArray[np.float32]
    labels: tuple[int, ...]


def grpc_samples(samples: list[Sample]) -> list[GrpcSample]:
    """The gRPC twins of prepared v1 samples (same digits, same labels)."""
    return [
        GrpcSample(
            (decode_binary_body(s.binary).astype(np.float32) / np.float32(255)).astype(np.float32),
            s.labels,
        )
        for s in samples
    ]


def check_outputs(
    probabilities: npt.NDArray[Any] | None, labels: npt.NDArray[Any] | None, expected: int
) -> list[int]:
    """The labels of a valid answer for ``expected`` digits; raises :class:`SchemaError`."""
    if probabilities is None or labels is None:
        raise SchemaError(f"outputs missing: expected {', '.join(OUTPUTS)}")
    if probabilities.shape != (expected, NUM_CLASSES) or labels.shape != (expected,):
        raise SchemaError(
            f"outputs {list(probabilities.shape)} / {list(labels.shape)} do not hold {expected} "
            "predictions"
        )
    if not np.array_equal(probabilities.argmax(axis=1), labels):
        raise SchemaError("label is not the most probable class")
    return [int(label) for label in labels]


class GrpcInferClient:
    """``tritonclient.grpc.InferenceServerClient`` whose calls report to Locust.

    ``request_event``: the environment's ``events.request`` hook (Locust's documented custom
    client pattern). :meth:`infer` never raises for a failed call: the failure is reported,
    and the caller gets None.
    """

    def __init__(self, target: str, request_event: Any, timeout_s: float = 10.0) -> None:
        import tritonclient.grpc as triton  # late: see the module docstring

        self._triton = triton
        self._client: Any = triton.InferenceServerClient(target)
        self._event = request_event
        self._timeout_s = timeout_s
        self._outputs = [triton.InferRequestedOutput(name) for name in OUTPUTS]
        _open.add(self)

    def infer(self, sample: GrpcSample, name: str = REQUEST_NAME) -> list[int] | None:
        """One ModelInfer of ``sample``; its labels, or None if the call failed (reported)."""
        started = time.perf_counter()
        exception: Exception | None = None
        length = 0
        labels: list[int] | None = None
        try:
            tensor = self._triton.InferInput(INPUT, list(sample.pixels.shape), "FP32")
            tensor.set_data_from_numpy(sample.pixels)
            result = self._client.infer(
                MODEL, [tensor], outputs=self._outputs, client_timeout=self._timeout_s
            )
            response = result.get_response()
            length = response.ByteSize()
            labels = check_outputs(
                result.as_numpy(OUTPUTS[0]), result.as_numpy(OUTPUTS[1]), len(sample.labels)
            )
        except Exception as exc:  # the client's errors, a bad answer: both are failures
            exception, labels = exc, None
        self._event.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            exception=exception,
            context={},
        )
        return labels

    def close(self) -> None:
        """Close the channel and drop the client at once, while gevent still runs.

        Why at once: tritonclient's ``__del__`` closes the channel again; left to the
        interpreter's exit (no gevent hub any more) that close never returned, and a Locust
        worker process hung there after its run (seen with ``--processes 2``)."""
        client, self._client = self._client, None
        _open.discard(self)
        if client is not None:
            client.close()
            del client  # its __del__ (a second close) runs now, not at exit


def close_all() -> None:
    """Close every client still open in this process (users Locust stopped without
    ``on_stop``); call it before the process exits, with gevent running."""
    for client in list(_open):
        client.close()
