"""Admission at arrival: refuse a prediction BEFORE its body is read when it cannot be served.

Under overload the cheapest answer is the one given from the headers alone: reading and decoding
a body the batcher would then refuse costs as much CPU as serving it, and that CPU is what the
event loop needs to accept and shed the next request. ``admit`` answers, from the request's
expected rows and deadline:

* not ready / draining (``Service.admit``, called first by the pipeline): 503;
* the deadline is shorter than the request's own compute would take on an idle service (an
  idle batch): 400 (``infeasible``), never a 503: no retry can help;
* the queue cannot take the expected rows: 503 (``queue_full``);
* the estimated wait (the event loop's standing lag, serving/transport/loop_lag.py, + batches
  ahead x the batcher's measured seconds per batch) is longer than 75 % of the time left before the
  deadline: 503 (``overloaded``) at once, not a 504 later.

Each 503 carries a ``Retry-After`` derived from the same estimate. The pipeline calls ``admit``
once per request, with the codec's row estimate (a lower bound from the headers) and the
deadline. The estimator and its failure modes: docs/serving.md, "Admission".
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from serving.batching import Batcher, QueueFullError
from serving.lifecycle import Service
from serving.pipeline.errors import ApiError

MAX_RETRY_AFTER_S = 30
#: Share of the remaining deadline the estimated wait may fill. Under steady overload the queue
#: settles where the estimate meets this line; the rest absorbs the estimate's noise.
HEADROOM = 0.75


class Lag(Protocol):
    """How far behind the event loop runs (serving/transport/loop_lag.py measures it)."""

    @property
    def standing_s(self) -> float: ...


class NoLag:
    """No measurement: no lag added (a pipeline without a loop monitor)."""

    standing_s = 0.0


class InfeasibleDeadlineError(ApiError):
    """A deadline no idle service could meet: the client's to change (400), not a retry."""

    status_code = 400


class OverloadedError(QueueFullError):
    """Refused at arrival: the queue cannot serve it within its deadline (503 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def header_timeout_s(raw: bytes | None, default_s: float, max_s: float) -> float:
    """The ``X-Request-Timeout-Ms`` header in seconds (``default_s`` without one), capped at
    ``max_s``. Raises ``ValueError`` with the client's error when it is not a positive number."""
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
    batcher: Batcher,
    rows: int,
    deadline: float,
    now: float | None = None,
    budget_s: float | None = None,
    lag: Lag = NoLag(),  # noqa: B008  (immutable)
) -> None:
    """Refuse (:class:`OverloadedError`) ``rows`` rows due by ``deadline`` (monotonic) unless
    ``batcher`` can take them and compute them in time; every refusal is reported to the
    service's observer by reason. ``batcher`` comes from ``Service.admit`` (which refuses while
    not ready or draining). ``budget_s``: the request's whole timeout; when even an idle batch
    takes longer, it is :class:`InfeasibleDeadlineError` (time lost waiting is an overload)."""
    queued = batcher.queued_rows
    settings = service.settings
    capacity, batch_rows = settings.max_queue_size, settings.max_batch_size
    if queued + rows > capacity:
        service.observer.on_rejected("queue_full", rows)
        raise OverloadedError(
            f"queue full ({queued} of {capacity} rows waiting); retry later",
            retry_after_s(batcher.throughput.wait_s(queued + rows - capacity, batch_rows)),
        )
    lag_s = lag.standing_s
    ahead = batcher.rows_in_flight + queued
    meter = batcher.throughput
    remaining = deadline - (time.monotonic() if now is None else now)
    # At the service's best (the loop's lag and a passing stall are load: an overload, not this).
    alone = meter.fastest_idle_s
    if budget_s is not None and alone > budget_s * HEADROOM:
        service.observer.on_rejected("infeasible", rows)
        raise InfeasibleDeadlineError(
            f"the request's timeout ({budget_s * 1000:g} ms) is shorter than this service needs "
            f"for it even when idle (~{alone * 1000:.1f} ms); send a longer timeout"
        )
    # Nothing ahead: computed at once, in a batch of its own, as fast as the service goes (a
    # past stall in the averages must not refuse it, or nothing would be measured again).
    wait = lag_s + (meter.wait_s(ahead + rows, batch_rows) if ahead else alone)
    if wait > remaining * HEADROOM:
        service.observer.on_rejected("overloaded", rows)
        raise OverloadedError(
            f"overloaded: the estimated wait ({wait * 1000:.0f} ms) exceeds the request's "
            f"deadline ({max(remaining, 0) * 1000:.0f} ms); retry later",
            retry_after_s(wait - remaining * HEADROOM),
        )
