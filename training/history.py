"""Per-epoch history of a Keras fit: the metrics Keras reports plus the seconds each epoch took.

Keras's ``History`` has the metrics but not the time; a callback stamps each epoch, so the
record holds what the curves and the optimizer comparison need (loss, accuracy, validation
loss and accuracy, seconds, including the validation pass).
"""

from __future__ import annotations

import time
from typing import Any

from model_repository.metadata import EpochRecord


class EpochClock:
    """Wall-clock seconds per epoch, as a Keras callback (``clock.callback()``)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def callback(self) -> Any:
        import keras

        return keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: self._begin(),
            on_epoch_end=lambda epoch, logs: self._end(),
        )

    def _begin(self) -> None:
        self._start = time.perf_counter()

    def _end(self) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def records(metrics: dict[str, list[float]], seconds: list[float]) -> list[EpochRecord]:
    """Epoch records from Keras's ``History.history`` and the clock's seconds."""

    def value(key: str, index: int) -> float | None:
        series = metrics.get(key)
        return float(series[index]) if series is not None else None

    return [
        EpochRecord(
            epoch=index + 1,
            loss=float(metrics["loss"][index]),
            accuracy=float(metrics["accuracy"][index]),
            val_loss=value("val_loss", index),
            val_accuracy=value("val_accuracy", index),
            seconds=round(seconds[index], 3),
        )
        for index in range(len(metrics["loss"]))
    ]


def first_epoch_reaching(history: list[EpochRecord], val_accuracy: float) -> int | None:
    """The first epoch whose validation accuracy is at least ``val_accuracy`` (None if never)."""
    for record in history:
        if record.val_accuracy is not None and record.val_accuracy >= val_accuracy:
            return record.epoch
    return None
