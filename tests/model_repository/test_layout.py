from __future__ import annotations

from pathlib import Path

import pytest

from model_repository import ModelRepositoryError, next_version, resolve


def make_versions(root: Path, *names: str) -> None:
    for name in names:
        (root / "mnist" / name).mkdir(parents=True)


def test_next_version_starts_at_one(tmp_path: Path) -> None:
    assert next_version(tmp_path, "mnist") == 1


def test_versions_are_integers_compared_numerically(tmp_path: Path) -> None:
    make_versions(tmp_path, "1", "2", "10", ".staging-abc", "latest")
    assert next_version(tmp_path, "mnist") == 11
    assert resolve(tmp_path, "mnist").version == 10
    assert resolve(tmp_path, "mnist", 2).path == tmp_path / "mnist" / "2"


def test_missing_model_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelRepositoryError, match="python -m training"):
        resolve(tmp_path, "mnist")


def test_missing_pinned_version_lists_available(tmp_path: Path) -> None:
    make_versions(tmp_path, "1", "3")
    with pytest.raises(ModelRepositoryError, match=r"no version 2.*\[1, 3\]"):
        resolve(tmp_path, "mnist", 2)
