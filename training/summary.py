"""The few lines ``python -m training`` ends with, read back from the published metadata.

Built from ``metadata.json`` rather than from variables of the run, so what is printed is
exactly what was published.
"""

from __future__ import annotations

from pathlib import Path

from model_repository.layout import METADATA_FILE
from model_repository.metadata import load_metadata

#: How the summary names ``training.lr_schedule``.
SCHEDULE_TEXT = {"cosine": "cosine decay to 0", "constant": "constant"}


def _percent(value: object) -> str:
    return f"{float(value) * 100:.2f} %" if isinstance(value, int | float) else "n/a"


def summary(version_dir: Path) -> str:
    """Test accuracy (Keras / ONNX / int8), parity, training time and where the model went."""
    meta = load_metadata(version_dir / METADATA_FILE)
    training = meta.training
    accuracy = meta.test_accuracy
    drop = meta.metrics.get("int8_accuracy_drop")
    change = f"{-float(drop) * 100:+.2f} pp" if isinstance(drop, int | float) else "n/a"
    history = meta.history
    last = history[-1] if history else None
    schedule = SCHEDULE_TEXT.get(meta.lr_schedule, meta.lr_schedule)
    lines = [
        f"model          {training.get('arch', 'mlp')}, {training.get('optimizer', 'adam')} "
        f"(lr {training.get('learning_rate')}, {schedule}), "
        f"batch {training.get('batch_size')}, "
        f"{training.get('epochs')} epochs, {training.get('train_seconds')} s of training",
        f"test accuracy  Keras {_percent(accuracy.get('keras'))} / ONNX "
        f"{_percent(accuracy.get('onnx'))} / int8 {_percent(accuracy.get('onnx_int8'))} "
        f"(int8 vs fp32 {change}) on {meta.metrics.get('test_examples')} test images",
    ]
    if last is not None and last.val_accuracy is not None:
        lines.append(
            f"validation     {_percent(last.val_accuracy)} after epoch {last.epoch} "
            f"(loss {last.val_loss:.4f})"
        )
    lines += [
        f"parity         ONNX vs Keras max |dp| {meta.parity.max_abs_diff:.1e} "
        f"(tolerance {training.get('parity_tolerance')}), "
        f"argmax agreement {_percent(meta.parity.argmax_agreement)}",
        f"published      {version_dir} ({', '.join(sorted([*meta.files, METADATA_FILE]))})",
    ]
    return "\n".join(lines)
