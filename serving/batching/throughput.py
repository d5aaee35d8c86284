"""How fast the batcher is draining its queue right now: seconds per row, smoothed per batch.

Admission (serving/admission.py) multiplies it by the rows ahead of a new request to estimate
that request's wait. It is measured, not configured, because the rate depends on the model, the
batch sizes the load produces, and what else the CPU is doing.
"""

from __future__ import annotations


class ThroughputMeter:
    """An exponentially weighted moving average of seconds per row over finished batches,
    quick to follow a slowdown (``rise``) and slow to trust a speed-up (``fall``): admission
    errs towards refusing, since a request admitted on an optimistic estimate times out (504)
    after queueing, while one refused too early can retry elsewhere at once.

    A batch that started while work was waiting is timed from the previous batch's end (the
    service interval: compute, thread hops and the event loop's other work between batches);
    a batch that started on an idle batcher is timed from when it was taken. One update is two
    subtractions and a multiply, done once per batch on the event loop.
    """

    def __init__(self, rise: float = 0.5, fall: float = 0.1) -> None:
        self._rise = rise
        self._fall = fall
        self._seconds_per_row: float | None = None
        self._backlog_since: float | None = None

    @property
    def seconds_per_row(self) -> float | None:
        """None until the first batch finished (then nothing is refused for its wait)."""
        return self._seconds_per_row

    def record(self, rows: int, taken_at: float, finished_at: float, backlog: bool) -> None:
        """A batch of ``rows`` rows taken at ``taken_at`` finished at ``finished_at``
        (``time.monotonic()``); ``backlog`` says whether requests were waiting at its end."""
        since = self._backlog_since
        start = since if since is not None and since < taken_at else taken_at
        sample = max(finished_at - start, 0.0) / max(rows, 1)
        current = self._seconds_per_row
        if current is None:
            self._seconds_per_row = sample
        else:
            weight = self._rise if sample > current else self._fall
            self._seconds_per_row = current + weight * (sample - current)
        self._backlog_since = finished_at if backlog else None

    def wait_s(self, rows_ahead: int) -> float:
        """Estimated seconds until ``rows_ahead`` queued rows are computed (0 before any data)."""
        per_row = self._seconds_per_row
        return rows_ahead * per_row if per_row is not None else 0.0
