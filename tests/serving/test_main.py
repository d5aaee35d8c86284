"""``python -m serving``: flags over the environment, help from the settings' descriptions, and
one clear line (no traceback) for settings, a model or a keys file it cannot use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.__main__ import main, parse_args
from serving.settings import Settings
from tests.support.server import REPO


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


def test_flags_name_their_settings_and_absent_flags_leave_the_environment() -> None:
    assert parse_args([]) == {}
    given = parse_args(
        ["--port", "9000", "--variant", "int8", "--model-repository", "m", "--workers", "2"]
    )
    assert given == {
        "port": 9000,
        "model_variant": "int8",
        "model_repository": Path("m"),
        "workers": 2,
    }


def test_a_flag_outside_its_settings_choices_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(["--variant", "fp16"])
    assert raised.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_invalid_settings_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--port", "-1"]) == 2
    bad_flag = capsys.readouterr().err
    monkeypatch.setenv("SERVING_MAX_QUEUE_SIZE", "10")
    assert main([]) == 2
    contradiction = capsys.readouterr().err
    for err in (bad_flag, contradiction):
        assert err.count("\n") == 1
        assert err.startswith("serving: invalid settings: ")
    assert "SERVING_PORT: Input should be greater than or equal to 0" in bad_flag
    assert "max_queue_size (10) must be >= max_instances" in contradiction


def test_a_keys_file_it_cannot_use_exits_2_with_one_line(
    tiny_model_repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text("[[keys]]\nname = broken\n")
    args = ["--model-repository", str(tiny_model_repository), "--keys-file", str(keys)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("serving: cannot use the keys file: ")
