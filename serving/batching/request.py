"""What waits in the queue: one accepted request, and why a request may leave uncomputed.

Its own module because both sides import it: the batcher that queues requests and the observers
that watch them (``hooks.py`` and ``serving.observability``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Labels = npt.NDArray[np.intp]


class Outputs(NamedTuple):
    """What the model answers for some rows: the class probabilities and, derived from them once
    per row (in the inference thread, by :meth:`of`), the predicted label and its confidence.

    Every consumer (the response, the prediction ids, quality metrics, drift, rollouts) reads
    ``labels`` and ``confidences`` from here instead of taking its own argmax.

    ``second``: during a rollout, what the other version computed for the same rows in the same
    inference-thread hop (serving/rollout_service.py); None otherwise. Never sent to a client:
    it feeds the rollout's evidence and the prediction ids that score both versions.
    """

    probabilities: Array  # (rows, classes)
    labels: Labels  # (rows,)
    confidences: Array  # (rows,)
    second: SecondOpinion | None = None

    @classmethod
    def of(cls, probabilities: Array) -> Outputs:
        labels = probabilities.argmax(axis=1)
        confidences = np.take_along_axis(probabilities, labels[:, None], axis=1)[:, 0]
        return cls(probabilities, labels, confidences)

    @property
    def rows(self) -> int:
        return int(self.probabilities.shape[0])

    def slice(self, start: int, stop: int) -> Outputs:
        """Rows ``start:stop`` (views, no copy)."""
        second = self.second
        return Outputs(
            self.probabilities[start:stop],
            self.labels[start:stop],
            self.confidences[start:stop],
            None if second is None else second.slice(start, stop),
        )


@dataclass(frozen=True, slots=True)
class SecondOpinion:
    """The other version of a rollout on the same rows: its outputs (None: it raised, and
    ``error`` says what) and its compute seconds. The answering version's batch never fails
    because of it."""

    version: str
    outputs: Outputs | None
    seconds: float
    error: BaseException | None = None

    def slice(self, start: int, stop: int) -> SecondOpinion:
        outputs = None if self.outputs is None else self.outputs.slice(start, stop)
        return SecondOpinion(self.version, outputs, self.seconds, self.error)


#: The fixed set of rejection reasons (bounded metric label values).
#: ``overloaded``: refused at arrival because its estimated wait exceeds its deadline (503);
#: ``infeasible``: its deadline is shorter than an idle service needs for it (400).
#: Access control (serving/access/guard.py): ``missing_key``, ``invalid_key`` (401),
#: ``forbidden``, ``admin_off`` (403), ``rate_limited`` (429).
RejectReason = Literal[
    "queue_full",
    "draining",
    "not_ready",
    "deadline",
    "cancelled",
    "overloaded",
    "infeasible",
    "missing_key",
    "invalid_key",
    "forbidden",
    "admin_off",
    "rate_limited",
]


@dataclass(slots=True, eq=False)
class QueuedRequest:
    """One accepted request while it waits and computes."""

    pixels: Array
    rows: int
    enqueued_at: float
    deadline: float
    future: asyncio.Future[Outputs]
    #: Opaque slot for the observer (e.g. the OTel span context captured in ``on_enqueued``).
    trace_context: object | None = field(default=None)
    #: The model version its batcher computes with (observers label batch spans with it).
    model_version: str = ""
