"""The summary ``python -m training`` ends with names the learning-rate schedule of the run."""

from __future__ import annotations

from pathlib import Path

from tests.support.tiny_model import write_model_version
from training.summary import summary


def test_summary_names_the_cosine_decay(small_published: Path) -> None:
    first = summary(small_published).splitlines()[0]
    assert first.startswith("model          mlp, adam (lr 0.001, cosine decay to 0), batch 128,")


def test_a_version_from_before_the_schedule_reads_as_constant(tmp_path: Path) -> None:
    """Its metadata has no ``training.lr_schedule``: it was trained at a constant rate."""
    first = summary(write_model_version(tmp_path)).splitlines()[0]
    assert ", constant), batch " in first
