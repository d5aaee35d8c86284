"""``make help`` shows descriptions with make variables expanded, including overrides."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.server import REPO


def _help(*variables: str) -> str:
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    result = subprocess.run(
        ["make", "--no-print-directory", "help", *variables],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_help_expands_variables() -> None:
    text = _help()
    assert "$(" not in text
    assert "unless models/mnist already has a version" in text
    assert " docs " in text


def test_help_shows_overridden_values() -> None:
    assert "unless /srv/repo/digits already has a version" in _help(
        "MODELS=/srv/repo", "MODEL_NAME=digits"
    )
