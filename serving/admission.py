"""Admission at arrival: refuse a prediction BEFORE its body is read when it cannot be served.

Under overload the cheapest answer is the one given from the headers alone: reading and decoding
a body the batcher would then refuse costs as much CPU as serving it, and that CPU is what the
event loop needs to accept and shed the next request. ``admit`` answers, from the request's
expected rows and deadline:

* not ready / draining (``Service.admit``): 503;
* the queue cannot take the expected rows: 503 (``queue_full``);
* the estimated wait (the event loop's standing lag, serving/transport/loop_lag.py, + batches
  ahead x the batcher's measured seconds per batch) is longer than 75 % of the time left before the
  deadline: 503 (``overloaded``) at once, not a 504 later.

Each 503 carries a ``Retry-After`` derived from the same estimate. Any handler that queues work
(``/v1/predict``, the v2 infer route) calls ``admit`` with its own row estimate and deadline.
The estimator and its failure modes: docs/serving.md, "Admission".
"""

from __future__ import annotations

import math
import time

from serving.batching import Batcher, QueueFullError
from serving.lifecycle import Service
from serving.model import LoadedModel

#: Bytes one instance takes in raw uint8 (exact) and at most in JSON (784 numbers written as
#: long decimals): dividing by the most gives a lower bound of the rows, so an
#: estimate never refuses a request that fits.
RAW_BYTES_PER_ROW = 784
JSON_MAX_BYTES_PER_ROW = 784 * 24
MAX_RETRY_AFTER_S = 30
#: Share of the remaining deadline the estimated wait may fill. Under steady overload the queue
#: settles where the estimate meets this line; the rest absorbs the estimate's noise.
HEADROOM = 0.75


class OverloadedError(QueueFullError):
    """Refused at arrival: the queue cannot serve it within its deadline (503 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def expected_rows(content_type: bytes, content_length: bytes | None) -> int:
    """A lower bound of the rows a body holds, from its headers alone (1 when unknown)."""
    if content_length is None or not content_length.isdigit():
        return 1
    length = int(content_length)
    kind = content_type.partition(b";")[0].strip().lower()
    if kind == b"application/octet-stream":
        return max(1, -(-length // RAW_BYTES_PER_ROW))
    if kind == b"application/json":
        return max(1, length // JSON_MAX_BYTES_PER_ROW)
    return 1  # image/png is one image; anything else is refused (415) after admission


#: The most bytes a row of OIP binary tensor data takes (FP32; UINT8 takes a quarter).
OIP_BINARY_BYTES_PER_ROW = 784 * 4


def expected_oip_rows(
    content_type: bytes, content_length: bytes | None, header_length: bytes | None
) -> int:
    """A lower bound of the rows of an OIP v2 infer body, from its headers alone: binary tensor
    data after ``Inference-Header-Content-Length`` bytes of JSON, else the JSON rule."""
    if header_length is None:
        return expected_rows(b"application/json", content_length) if content_type else 1
    if content_length is None or not content_length.isdigit() or not header_length.isdigit():
        return 1
    return max(1, (int(content_length) - int(header_length)) // OIP_BINARY_BYTES_PER_ROW)


def header_timeout_s(raw: bytes | None, default_s: float, max_s: float) -> float:
    """The ``X-Request-Timeout-Ms`` header in seconds (``default_s`` without one), capped at
    ``max_s``. Raises ``ValueError`` with the client's error when it is not a positive number;
    the protocol shedder and the predict handler both read the header through it."""
    if raw is None:
        return default_s
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("X-Request-Timeout-Ms must be a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("X-Request-Timeout-Ms must be a positive number")
    return min(value / 1000.0, max_s)


def retry_after_s(wait_s: float) -> int:
    """Whole seconds (HTTP's unit) until the wait ahead has drained, 1 to 30."""
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(wait_s)))


def admit(
    service: Service,
    rows: int,
    deadline: float,
    now: float | None = None,
    version: str | None = None,
) -> tuple[Batcher, LoadedModel]:
    """The batcher and model to serve ``rows`` rows with, due by ``deadline`` (monotonic), of
    ``version`` (default: the newest served).

    Raises ``NotReadyError`` / ``DrainingError`` / ``UnknownVersionError`` (via
    ``Service.admit``) or :class:`OverloadedError`; every refusal is reported to the service's
    observer by reason.
    """
    batcher, model = service.admit(version)
    queued = batcher.queued_rows
    settings = service.settings
    capacity, batch_rows = settings.max_queue_size, settings.max_batch_size
    if queued + rows > capacity:
        service.observer.on_rejected("queue_full", rows)
        raise OverloadedError(
            f"queue full ({queued} of {capacity} rows waiting); retry later",
            retry_after_s(batcher.throughput.wait_s(queued + rows - capacity, batch_rows)),
        )
    lag = service.loop_lag.standing_s
    ahead = batcher.rows_in_flight + queued
    meter = batcher.throughput
    wait = lag + (meter.wait_s(ahead + rows, batch_rows) if ahead else meter.idle_batch_s)
    remaining = deadline - (time.monotonic() if now is None else now)
    if wait > remaining * HEADROOM:
        service.observer.on_rejected("overloaded", rows)
        raise OverloadedError(
            f"overloaded: the estimated wait ({wait * 1000:.0f} ms) exceeds the request's "
            f"deadline ({max(remaining, 0) * 1000:.0f} ms); retry later",
            retry_after_s(wait - remaining * HEADROOM),
        )
    return batcher, model
