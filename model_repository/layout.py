"""On-disk layout: ``<root>/<name>/<version>/{model.onnx, model.int8.onnx, metadata.json}``.

Training also writes ``training.png`` (its learning curves) beside them; the service ignores it.

Versions are positive integers. Training always writes the next free one; the service serves
the highest one unless pinned. Directories that are not integers (``tmp``, ``.partial``) are
ignored, which lets training write into a temporary directory and rename it atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
METADATA_FILE = "metadata.json"
CURVES_FILE = "training.png"

Variant = Literal["fp32", "int8"]
VARIANT_FILES: dict[str, str] = {"fp32": FP32_FILE, "int8": INT8_FILE}


class ModelRepositoryError(Exception):
    """The model repository does not hold what was asked for; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class ModelVersionDir:
    """One version directory of one model."""

    name: str
    version: int
    path: Path

    def model_file(self, variant: Variant) -> Path:
        return self.path / VARIANT_FILES[variant]

    @property
    def metadata_file(self) -> Path:
        return self.path / METADATA_FILE


def list_versions(root: Path, name: str) -> list[int]:
    """Integer version directories of ``name`` in ascending order (empty if none)."""
    model_dir = root / name
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(root: Path, name: str) -> int:
    """The next free version number: one more than the highest existing, starting at 1."""
    versions = list_versions(root, name)
    return versions[-1] + 1 if versions else 1


def resolve(root: Path, name: str, version: int | None = None) -> ModelVersionDir:
    """Find a version directory: the pinned ``version``, or the latest when ``None``."""
    versions = list_versions(root, name)
    if not versions:
        raise ModelRepositoryError(
            f"no versions of model {name!r} under {root}: train one with `python -m training` "
            f"(or point SERVING_MODEL_REPOSITORY at an existing model repository)"
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise ModelRepositoryError(
            f"model {name!r} has no version {version} under {root}; available: {versions}"
        )
    return ModelVersionDir(name=name, version=version, path=root / name / str(version))
