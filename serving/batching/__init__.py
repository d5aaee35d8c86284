"""Where a request waits: the adaptive micro-batcher and the hooks that observe it."""

from serving.batching.observer import BatchObserver, NullObserver
from serving.batching.queue import (
    Batcher,
    BatcherError,
    DeadlineExceededError,
    DrainingError,
    InferenceError,
    QueuedRequest,
    QueueFullError,
)

__all__ = [
    "BatchObserver",
    "Batcher",
    "BatcherError",
    "DeadlineExceededError",
    "DrainingError",
    "InferenceError",
    "NullObserver",
    "QueueFullError",
    "QueuedRequest",
]
