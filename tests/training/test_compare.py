"""The optimizer study: the claim checks on known numbers, and the real command on a subset."""

from __future__ import annotations

import re
from pathlib import Path

from model_repository.metadata import EpochRecord
from training import compare
from training.compare import BEGIN, END, Result, checks, study, write_report


def fake_result(label: str, accuracies: list[float], seconds: float) -> Result:
    """A run whose validation accuracy per epoch and epoch time are given."""
    history = [
        EpochRecord(
            epoch=i + 1,
            loss=1.0,
            accuracy=acc,
            val_loss=1.0 - acc,
            val_accuracy=acc,
            seconds=seconds,
        )
        for i, acc in enumerate(accuracies)
    ]
    run = next(r for r in study(len(accuracies), 54_000) if r.label.startswith(label))
    return Result(run, history, 54_000, -(-54_000 // run.config.batch_size))


def verdicts(results: list[Result]) -> list[str]:
    return [line.rsplit("|", 2)[-2].strip() for line in checks(results)[2:]]


def test_claims_are_checked_against_the_numbers() -> None:
    results = [
        fake_result("full-batch GD (", [0.3, 0.5, 0.6], 1.0),
        fake_result("full-batch GD, lr 1.0", [0.5, 0.7, 0.8], 1.0),
        fake_result("mini-batch SGD", [0.90, 0.95, 0.971], 3.0),
        fake_result("SGD + momentum", [0.92, 0.96, 0.975], 3.0),
        fake_result("Adam (batch 128)", [0.96, 0.975, 0.98], 3.0),
        fake_result("Adam, batch 32", [0.97, 0.978, 0.979], 9.0),
        fake_result("Adam, batch 1024", [0.90, 0.94, 0.96], 1.5),
    ]
    assert verdicts(results) == ["yes"] * 7
    assert "epoch 3 (9 s)" in checks(results)[3]  # SGD reaches 97 % at the end of epoch 3

    # Batch 32 as fast per epoch as 128 and GD ahead of SGD: those claims fail.
    results[5] = fake_result("Adam, batch 32", [0.97, 0.978, 0.979], 3.5)
    results[0] = fake_result("full-batch GD (", [0.95, 0.97, 0.98], 1.0)
    assert verdicts(results) == ["**no**", "**no**", "yes", "yes", "**no**", "yes", "yes"]


def test_time_claims_are_untested_when_nobody_reaches_the_target() -> None:
    slow = [
        fake_result(label, [0.5, 0.6], 1.0)
        for label in (
            "full-batch GD (",
            "full-batch GD, lr 1.0",
            "mini-batch SGD",
            "SGD + momentum",
            "Adam (batch 128)",
            "Adam, batch 32",
            "Adam, batch 1024",
        )
    ]
    result = verdicts(slow)
    assert result[1].startswith("untested")
    assert result[2].startswith("untested")


def test_study_runs_at_constant_learning_rates() -> None:
    """The study compares optimizers, not schedules: none of its runs takes the default decay."""
    assert {run.config.lr_schedule for run in study(10, 54_000)} == {"constant"}


def test_report_replaces_only_the_generated_block(tmp_path: Path) -> None:
    doc = tmp_path / "training.md"
    doc.write_text(f"# Training\n\nHand-written intro.\n\n{BEGIN}\nold numbers\n{END}\n\nOutro.\n")
    write_report(doc, f"{BEGIN}\nnew numbers\n{END}")
    text = doc.read_text()
    assert "old numbers" not in text
    assert text.startswith("# Training\n\nHand-written intro.\n\n")
    assert text.endswith("new numbers\n" + END + "\n\nOutro.\n")
    fresh = tmp_path / "new" / "training.md"
    write_report(fresh, f"{BEGIN}\nnew numbers\n{END}")
    assert "new numbers" in fresh.read_text()


def test_compare_command_on_a_subset(tmp_path: Path, mnist_dir: Path) -> None:
    doc = tmp_path / "docs" / "training.md"
    image = tmp_path / "docs" / "images" / "optimizers.png"
    doc.parent.mkdir()
    doc.write_text(f"# Training\n\nKept.\n\n{BEGIN}\n{END}\n")
    args = ["--data-dir", str(mnist_dir), "--epochs", "1", "--train-limit", "300"]
    assert compare.main([*args, "--doc", str(doc), "--image", str(image)]) == 0
    text = doc.read_text()
    assert text.startswith("# Training\n\nKept.\n\n")
    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "](images/optimizers.png)" in text
    assert "fitted on 270 training images, validated on the last 30 of the 300" in text
    for run in study(1, 270):
        assert re.search(rf"^\| {re.escape(run.label)} \|", text, re.MULTILINE), run.label
    # Full-batch gradient descent takes one step per epoch.
    assert "| full-batch GD (batch 270) | sgd | 0.1 | 270 | 1 |" in text
