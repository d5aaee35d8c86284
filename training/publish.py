"""Writing a model version into the model repository, atomically.

Files are written into a hidden temporary directory beside the versions and renamed to the next
free version number at the end, so a reader (the service) never sees a half-written version and
two concurrent trainings cannot claim the same number.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from model_repository.layout import METADATA_FILE, next_version
from model_repository.metadata import FileInfo, Metadata, dump_metadata, sha256_file


def file_infos(directory: Path, names: list[str]) -> dict[str, FileInfo]:
    return {
        name: FileInfo(
            sha256=sha256_file(directory / name), bytes=(directory / name).stat().st_size
        )
        for name in names
    }


def staging_dir(root: Path, name: str) -> Path:
    """A fresh hidden directory under ``root/name`` to write a version into."""
    (root / name).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root / name))
    staging.chmod(0o755)  # mkdtemp makes it 0700: the service may run as another user
    return staging


def publish(staging: Path, root: Path, name: str, metadata_for: Callable[[int], Metadata]) -> Path:
    """Write ``metadata.json`` (built for the claimed version) and move ``staging`` into place.

    ``metadata_for(version)`` is called again if another writer claims the version first.
    """
    for _ in range(100):
        version = next_version(root, name)
        dump_metadata(metadata_for(version), staging / METADATA_FILE)
        target = root / name / str(version)
        try:
            os.rename(staging, target)  # atomic; fails if another writer created `target`
        except OSError:
            if target.exists():
                continue
            raise
        return target
    shutil.rmtree(staging, ignore_errors=True)
    raise RuntimeError(f"could not claim a version number under {root / name}")
