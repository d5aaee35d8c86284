"""What one training run is: architecture, optimizer, batch size, epochs and the export gate.

Kept free of TensorFlow so that ``--help`` and the comparison study can read the defaults
without paying for a TensorFlow import. The learning rate's default depends on the optimizer:
it is ``None`` here and resolved by ``lr``, so the record of a run holds the value used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Arch = Literal["mlp", "cnn"]
Optimizer = Literal["adam", "sgd", "momentum", "rmsprop"]

ARCHS: tuple[Arch, ...] = ("mlp", "cnn")
OPTIMIZERS: tuple[Optimizer, ...] = ("adam", "sgd", "momentum", "rmsprop")

#: Default learning rate per optimizer: Adam and RMSprop at Keras's 1e-3; plain SGD at 0.1,
#: which it needs to get anywhere in 15 epochs; SGD with momentum 0.9 at 0.01, which gives it
#: the same effective step (lr / (1 - momentum)) as plain SGD.
DEFAULT_LEARNING_RATE: dict[Optimizer, float] = {
    "adam": 1e-3,
    "sgd": 0.1,
    "momentum": 0.01,
    "rmsprop": 1e-3,
}
MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainConfig:
    arch: Arch = "mlp"
    optimizer: Optimizer = "adam"
    learning_rate: float | None = None
    batch_size: int = 128
    epochs: int = 15
    hidden_units: int = 512
    dropout: float = 0.2
    validation_split: float = 0.1
    seed: int = 42
    parity_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, not {self.arch!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), not {self.validation_split}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be positive")

    @property
    def lr(self) -> float:
        """The learning rate used: the given one, else the optimizer's default."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATE[self.optimizer]
