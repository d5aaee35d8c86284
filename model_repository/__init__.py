"""The contract between the training stage and the service.

Training writes a model repository; the service reads it. Both import this package (it needs
only numpy and msgspec), so the on-disk layout, the metadata schema and the drift features are
defined once and cannot drift apart.
"""

from model_repository.layout import ModelRepositoryError, ModelVersionDir, next_version, resolve
from model_repository.metadata import Metadata, load_metadata, sha256_file

__all__ = [
    "Metadata",
    "ModelRepositoryError",
    "ModelVersionDir",
    "load_metadata",
    "next_version",
    "resolve",
    "sha256_file",
]
