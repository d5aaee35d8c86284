"""Quiet TensorFlow: nothing from its import reaches stderr unless asked, errors still do."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.server import REPO
from training.quiet import configure, native_stderr_captured


def test_native_stderr_is_discarded_on_success(capfd: pytest.CaptureFixture[str]) -> None:
    with native_stderr_captured():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_native_stderr_is_replayed_when_the_block_fails(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def failing_import() -> None:
        with native_stderr_captured():
            os.write(2, b"why it failed\n")
            raise ImportError("no such library")

    with pytest.raises(ImportError):
        failing_import()
    assert capfd.readouterr().err == "why it failed\n"


def test_tensorflow_import_is_quiet_by_default() -> None:
    code = (
        "from training import quiet; quiet.configure(False); quiet.import_tensorflow(False); "
        "import tensorflow as tf; tf.constant(1.0) + 1"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stderr == ""


def test_verbose_leaves_tensorflow_logging_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    configure(verbose=True)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
