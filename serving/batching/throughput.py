"""How fast the batcher is draining its queue right now: seconds per batch, smoothed.

Admission (serving/admission.py) multiplies it by the batches ahead of a new request to estimate
that request's wait. It is measured, not configured, because it depends on the model, the batch
sizes the load produces, and what else the CPU is doing. Per batch rather than per row: a batch
costs a fixed part (thread hop, event-loop work, onnxruntime's call) plus a per-row part, and at
light load the fixed part dominates, so seconds per row measured on 1-row batches and multiplied
by hundreds of queued rows would overestimate a long queue's wait many times over.
"""

from __future__ import annotations

import math
from collections import deque

#: Idle-start batches :attr:`ThroughputMeter.fastest_idle_s` takes the fastest of.
FASTEST_OF = 64


class ThroughputMeter:
    """An exponentially weighted moving average of the seconds a batch takes, quick to follow a
    slowdown (``rise``) and slow to trust a speed-up (``fall``): admission errs towards refusing,
    since a request admitted on an optimistic estimate times out (504) after queueing, while one
    refused too early can retry elsewhere at once.

    A batch that started while work was waiting is timed from the previous batch's end (the
    service interval: compute, thread hops and the event loop's other work between batches);
    a batch that started on an idle batcher is timed from when it was taken. One update is a
    few float operations, once per batch, on the event loop.
    """

    def __init__(self, rise: float = 0.5, fall: float = 0.1) -> None:
        self._rise = rise
        self._fall = fall
        self._seconds_per_batch: float | None = None
        self._idle_batch_s: float | None = None
        self._idle_samples: deque[float] = deque(maxlen=FASTEST_OF)
        self._fastest_idle_s = 0.0
        self._backlog_since: float | None = None

    @property
    def seconds_per_batch(self) -> float | None:
        """None until the first batch finished (then nothing is refused for its wait)."""
        return self._seconds_per_batch

    @property
    def idle_batch_s(self) -> float:
        """Seconds a batch takes when it starts on an idle batcher (0 before any): the wait of a
        request that nothing is ahead of. Backlog gaps never inflate it, so a past overload
        cannot make admission refuse work on an idle batcher, which would stop all measuring."""
        return self._idle_batch_s or 0.0

    @property
    def fastest_idle_s(self) -> float:
        """The fastest of the last ``FASTEST_OF`` idle-start batches (0 before any): what the
        service can do for a lone request at its best. A stall (a long collection, a starved
        CPU, a batch held for seconds) raises the average for a while, not this: a request
        judged impossible by it is impossible, not merely unlucky. Kept up to date once per
        batch: every admission reads it (a min over 64 samples cost ~0.7 µs each time)."""
        return self._fastest_idle_s

    def record(self, taken_at: float, finished_at: float, backlog: bool) -> None:
        """A batch taken at ``taken_at`` finished at ``finished_at`` (``time.monotonic()``);
        ``backlog`` says whether requests were waiting at its end."""
        since = self._backlog_since
        start = since if since is not None and since < taken_at else taken_at
        sample = max(finished_at - start, 0.0)
        self._seconds_per_batch = self._smooth(self._seconds_per_batch, sample)
        if start == taken_at:
            self._idle_batch_s = self._smooth(self._idle_batch_s, sample)
            self._idle_samples.append(sample)
            self._fastest_idle_s = min(self._idle_samples)
        self._backlog_since = finished_at if backlog else None

    def _smooth(self, current: float | None, sample: float) -> float:
        if current is None:
            return sample
        weight = self._rise if sample > current else self._fall
        return current + weight * (sample - current)

    def wait_s(self, rows_ahead: int, batch_rows: int) -> float:
        """Estimated seconds until ``rows_ahead`` rows are computed in batches of up to
        ``batch_rows`` rows (0 before any measurement)."""
        per_batch = self._seconds_per_batch
        if per_batch is None or rows_ahead <= 0:
            return 0.0
        return math.ceil(rows_ahead / batch_rows) * per_batch
