"""The settings table in docs/configuration.md is generated from ``Settings`` and kept in step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serving.settings import Settings
from tests.support.server import REPO

SCRIPT = REPO / "scripts" / "settings_table.py"
PAGE = REPO / "docs" / "configuration.md"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_committed_table_matches_settings() -> None:
    result = _script("--check")
    assert result.returncode == 0, result.stderr


def test_every_setting_has_a_row_with_its_default() -> None:
    region = (
        PAGE.read_text().split("<!-- settings-table:begin")[1].split("<!-- settings-table:end")[0]
    )
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in region.splitlines()
        if line.startswith("| `")
    }
    assert set(rows) == set(Settings.model_fields)
    assert "| `max_batch_size` | `SERVING_MAX_BATCH_SIZE` | `64` |" in rows["max_batch_size"]
    assert "`SERVING_PORT` or `PORT`" in rows["port"]


def test_a_stale_table_fails_the_check_and_is_rewritten(tmp_path: Path) -> None:
    original = PAGE.read_text()
    stale = original.replace("| `max_batch_size` | `SERVING_MAX_BATCH_SIZE` | `64` |", "| x |")
    assert stale != original
    page = tmp_path / "configuration.md"
    page.write_text(stale)

    check = _script("--check", "--path", str(page))
    assert check.returncode == 1
    assert "make docs" in check.stderr
    assert page.read_text() == stale  # --check changes nothing

    assert _script("--path", str(page)).returncode == 0
    assert page.read_text() == original


def test_a_page_without_markers_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    page.write_text("# Configuration\n")
    result = _script("--check", "--path", str(page))
    assert result.returncode != 0
    assert "marker" in result.stderr
