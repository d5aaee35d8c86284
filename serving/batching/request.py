"""What waits in the queue: one accepted request, and why a request may leave uncomputed.

Its own module because both sides import it: the batcher that queues requests and the observers
that watch them (``hooks.py`` and ``serving.observability``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

#: The fixed set of rejection reasons (bounded metric label values).
#: ``overloaded``: refused at arrival because its estimated wait exceeds its deadline (503).
RejectReason = Literal["queue_full", "draining", "not_ready", "deadline", "cancelled", "overloaded"]


@dataclass(slots=True, eq=False)
class QueuedRequest:
    """One accepted request while it waits and computes."""

    pixels: Array
    rows: int
    enqueued_at: float
    deadline: float
    future: asyncio.Future[Array]
    #: Opaque slot for the observer (e.g. the OTel span context captured in ``on_enqueued``).
    trace_context: object | None = field(default=None)
    #: The model version its batcher computes with (observers label batch spans with it).
    model_version: str = ""
