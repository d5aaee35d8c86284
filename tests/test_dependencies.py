"""Dependency hygiene: pinned versions, and no TensorFlow anywhere near the service."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TF_PACKAGES = {"tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "tf-keras"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[=<>~ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_direct_dependency_is_pinned() -> None:
    project = PYPROJECT["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    unpinned = [r for group in groups for r in group if "==" not in r]
    assert unpinned == []


def test_serve_set_has_no_tensorflow() -> None:
    project = PYPROJECT["project"]
    serve = names(project["dependencies"]) | names(project["optional-dependencies"]["serve"])
    assert serve.isdisjoint(TF_PACKAGES)


def test_importing_every_serving_module_does_not_import_tensorflow() -> None:
    code = (
        "import importlib, pkgutil, sys, serving, model_repository\n"
        "for pkg in (serving, model_repository):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'):\n"
        "            importlib.import_module(m.name)\n"
        "tf = ('tensorflow', 'keras', 'tf2onnx')\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in tf)\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_lock_file_covers_every_pinned_dependency() -> None:
    lock = (REPO / "requirements" / "constraints.txt").read_text().lower()
    locked = {line.split("==")[0].replace("_", "-") for line in lock.splitlines() if "==" in line}
    project = PYPROJECT["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    wanted = {n.replace("_", "-") for group in groups for n in names(group)}
    assert wanted - locked == set()
