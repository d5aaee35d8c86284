"""The metadata contract: the typed training history, and versions written before it existed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from model_repository.layout import METADATA_FILE
from model_repository.metadata import EpochRecord, dump_metadata, load_metadata
from tests.support.tiny_model import write_model_version


def test_metadata_without_history_still_loads(tmp_path: Path) -> None:
    """A version written before ``training.history`` existed: the service must still read it."""
    directory = write_model_version(tmp_path)
    meta = load_metadata(directory / METADATA_FILE)
    assert "history" not in meta.training
    assert meta.history == []
    # Nor ``training.lr_schedule``: such versions were trained at a constant rate.
    assert "lr_schedule" not in meta.training
    assert meta.lr_schedule == "constant"


def test_history_round_trips_through_json(tmp_path: Path) -> None:
    directory = write_model_version(tmp_path)
    meta = load_metadata(directory / METADATA_FILE)
    history = [
        EpochRecord(epoch=1, loss=0.5, accuracy=0.8, val_loss=0.4, val_accuracy=0.85, seconds=2.5),
        EpochRecord(epoch=2, loss=0.3, accuracy=0.9, seconds=2.0),
    ]
    training = {
        **meta.training,
        "history": msgspec.to_builtins(history),
        "arch": "cnn",
        "lr_schedule": "cosine",
    }
    dump_metadata(msgspec.structs.replace(meta, training=training), directory / METADATA_FILE)
    reloaded = load_metadata(directory / METADATA_FILE)
    assert reloaded.history == history
    assert reloaded.history[1].val_accuracy is None
    assert reloaded.training["arch"] == "cnn"
    assert reloaded.lr_schedule == "cosine"


def test_malformed_history_is_rejected(tmp_path: Path) -> None:
    directory = write_model_version(tmp_path)
    meta = load_metadata(directory / METADATA_FILE)
    bad = msgspec.structs.replace(meta, training={"history": [{"epoch": 1, "loss": "high"}]})
    with pytest.raises(msgspec.ValidationError):
        _ = bad.history
