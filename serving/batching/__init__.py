"""Where a request waits: the adaptive micro-batcher and the hooks that observe it."""

from serving.batching.hooks import BatchObserver, NullObserver
from serving.batching.queue import (
    Batcher,
    BatcherError,
    DeadlineExceededError,
    DrainingError,
    InferenceError,
    QueueFullError,
)
from serving.batching.request import Outputs, QueuedRequest, RejectReason, SecondOpinion

__all__ = [
    "BatchObserver",
    "Batcher",
    "BatcherError",
    "DeadlineExceededError",
    "DrainingError",
    "InferenceError",
    "NullObserver",
    "Outputs",
    "QueueFullError",
    "QueuedRequest",
    "RejectReason",
    "SecondOpinion",
]
