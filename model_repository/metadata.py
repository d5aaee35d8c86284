"""Schema of ``metadata.json``, the description of a model version saved beside it.

The service reads everything it needs from here (tensor names and shapes, the preprocessing
contract, file checksums, the training statistics for drift detection) instead of guessing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

SCHEMA_VERSION = 1


class TensorSpec(msgspec.Struct, frozen=True):
    name: str
    dtype: str
    # ``None`` or a string marks a dynamic dimension (e.g. "batch").
    shape: list[int | str | None]


class Preprocessing(msgspec.Struct, frozen=True):
    image_height: int = 28
    image_width: int = 28
    layout: str = "row-major"
    scale: float = 1.0 / 255.0
    value_range: tuple[float, float] = (0.0, 1.0)
    description: str = (
        "28x28 grayscale image flattened row-major to 784 values; uint8 pixels divided by 255 "
        "so that every value lies in [0, 1]; white digit on black background (MNIST convention)."
    )


class Histogram(msgspec.Struct, frozen=True):
    """A histogram of a per-image feature: ``len(edges) == len(counts) + 1``."""

    edges: list[float]
    counts: list[int]


class FeatureStats(msgspec.Struct, frozen=True):
    mean: float
    std: float
    histogram: Histogram


class TrainingStats(msgspec.Struct, frozen=True):
    """Statistics of the training inputs that live traffic is compared against (see features)."""

    num_images: int
    pixel_mean: float
    pixel_std: float
    features: dict[str, FeatureStats]


class FileInfo(msgspec.Struct, frozen=True):
    sha256: str
    bytes: int


class Parity(msgspec.Struct, frozen=True):
    max_abs_diff: float
    argmax_agreement: float


class EpochRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One epoch of ``training.history``: training and validation metrics, wall-clock seconds.

    The validation fields are ``None`` when the run held out no validation split.
    """

    epoch: int
    loss: float
    accuracy: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    seconds: float


class PredictionReference(msgspec.Struct, frozen=True):
    """The test set's predictions: the reference of prediction drift (``predictions``)."""

    num_images: int
    predicted_distribution: list[float]
    confidence: Histogram


class Metadata(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    created_at: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing
    labels: list[str]
    metrics: dict[str, object]
    parity: Parity
    files: dict[str, FileInfo]
    versions: dict[str, str]
    training_stats: TrainingStats
    training: dict[str, object] = msgspec.field(default_factory=dict)
    quantization: dict[str, object] = msgspec.field(default_factory=dict)
    #: Absent in models trained before prediction drift existed: the drift gauges stay NaN.
    prediction_reference: PredictionReference | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def test_accuracy(self) -> dict[str, float]:
        acc = self.metrics.get("test_accuracy", {})
        return {str(k): float(v) for k, v in acc.items()} if isinstance(acc, dict) else {}

    @property
    def history(self) -> list[EpochRecord]:
        """``training.history`` validated as epoch records; empty for versions written before it.

        ``training`` stays a free-form dict so that older metadata still loads; this property is
        the typed view of the one part of it with a fixed shape.
        """
        return msgspec.convert(self.training.get("history", []), list[EpochRecord])

    @property
    def lr_schedule(self) -> str:
        """``training.lr_schedule``: ``"cosine"`` (the rate decayed to 0 over the run) or
        ``"constant"``. Versions written before the key existed were trained at a constant rate,
        so that is what they report.
        """
        return str(self.training.get("lr_schedule", "constant"))


def load_metadata(path: Path) -> Metadata:
    """Read and validate ``metadata.json``; raises ``msgspec.ValidationError`` / ``DecodeError``."""
    return msgspec.json.decode(path.read_bytes(), type=Metadata)


def dump_metadata(metadata: Metadata, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(metadata), indent=2) + b"\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
