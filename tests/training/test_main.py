"""The ``python -m training`` command line: every option documents its default."""

from __future__ import annotations

import re

import pytest

from training.__main__ import main, parser
from training.config import TrainConfig


def test_help_shows_every_default() -> None:
    text = re.sub(r"\s+", " ", parser().format_help())
    options = re.findall(r" (--[a-z-]+)", text.split("options:", 1)[1])
    assert len(set(options)) >= 15
    for block in re.split(r" (?=--[a-z-]+[ A-Z_{])", text.split("options:", 1)[1])[1:]:
        if block.startswith("--help"):
            continue
        assert "(default: " in block, block


def test_help_names_the_per_optimizer_learning_rates() -> None:
    text = re.sub(r"\s+", " ", parser().format_help())
    assert "adam 0.001, sgd 0.1, momentum 0.01, rmsprop 0.001" in text


def test_bad_configuration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--validation-split", "1.5"]) == 2
    assert "validation_split" in capsys.readouterr().err


def test_lr_schedule_default_is_per_architecture() -> None:
    """Cosine for the MLP (it keeps the default above 98 %), constant for the CNN."""
    assert parser().parse_args([]).lr_schedule is None
    assert TrainConfig().schedule == "cosine"
    assert TrainConfig(arch="cnn").schedule == "constant"
    assert TrainConfig(arch="cnn", lr_schedule="cosine").schedule == "cosine"
    assert TrainConfig(lr_schedule="constant").schedule == "constant"
    assert parser().parse_args(["--lr-schedule", "constant"]).lr_schedule == "constant"
    with pytest.raises(SystemExit):
        parser().parse_args(["--lr-schedule", "step"])
    text = re.sub(r"\s+", " ", parser().format_help())
    assert "(default: per architecture, mlp cosine, cnn constant)" in text
