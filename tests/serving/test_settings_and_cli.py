"""Settings from the environment, and the CLI's clear failure on a missing or corrupt model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.settings import Settings
from tests.support.server import REPO


def test_environment_and_plain_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("SERVING_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("SERVING_MODEL_VARIANT", "int8")
    settings = Settings()
    assert settings.port == 9100
    assert settings.max_batch_size == 16
    assert settings.model_variant == "int8"
    monkeypatch.setenv("SERVING_PORT", "9200")
    assert Settings().port == 9200


def test_queue_must_hold_a_full_request() -> None:
    with pytest.raises(ValidationError, match="max_queue_size"):
        Settings(max_queue_size=10, max_instances=20)


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help() -> None:
    result = _serve("--help")
    assert result.returncode == 0
    assert "--model-repository" in result.stdout
    # Help text and defaults come from the Settings fields, not a second copy.
    text = " ".join(result.stdout.split())
    for name in ("host", "port", "model_repository", "model_variant", "workers", "log_level"):
        field = Settings.model_fields[name]
        assert " ".join(str(field.description).split()) in text
        assert f"default: {field.default}]" in text
    assert "[env SERVING_PORT or PORT; default: 8000]" in text


def test_missing_model_exits_non_zero_with_one_clear_line(tmp_path: Path) -> None:
    result = _serve("--model-repository", str(tmp_path / "empty"), "--port", "0")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "no versions of model 'mnist'" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_model_exits_non_zero_with_one_clear_line(
    tiny_model_repository: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_repository, copy)
    model = copy / "mnist" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-100])
    result = _serve("--model-repository", str(copy), "--port", "0")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "is corrupt: sha256" in result.stderr
