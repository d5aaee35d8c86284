"""The hook interface between the batcher and observability (traces, metrics, drift).

The batcher knows nothing about OpenTelemetry or Prometheus; it calls these methods at the four
moments that matter. Every call happens on the event loop, so implementations must be cheap and
must not block. ``on_enqueued`` runs in the request handler's task (the OTel current span is the
request's span), which is the place to capture ``request.trace_context`` for the batch span's
links; the other hooks run in the batcher's task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from serving.batching.request import Outputs, QueuedRequest, RejectReason


class BatchObserver(Protocol):
    def on_enqueued(self, request: QueuedRequest) -> None:
        """A validated request was accepted into the queue."""

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        """A batch of ``rows`` rows from ``requests`` is about to be computed."""

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: npt.NDArray[np.float32],
        outputs: Outputs | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        """A batch finished: ``outputs`` on success, ``error`` (and ``outputs=None``) on failure."""

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        """A request was refused or dropped without being computed.

        ``request`` is given when it had been queued (deadline passed, client gone), so that
        whatever ``on_enqueued`` started for it (a queue-wait span) can be ended.
        """


class NullObserver:
    """The default: observes nothing, costs one no-op call per hook."""

    def on_enqueued(self, request: QueuedRequest) -> None:
        pass

    def on_batch_start(self, batch_id: int, requests: Sequence[QueuedRequest], rows: int) -> None:
        pass

    def on_batch_end(
        self,
        batch_id: int,
        requests: Sequence[QueuedRequest],
        inputs: npt.NDArray[np.float32],
        outputs: Outputs | None,
        error: BaseException | None,
        compute_seconds: float,
    ) -> None:
        pass

    def on_rejected(
        self, reason: RejectReason, rows: int, request: QueuedRequest | None = None
    ) -> None:
        pass
