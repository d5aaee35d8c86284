"""Merge the requests of a batch into one input array and split the output back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]


def merge(parts: Sequence[Array]) -> Array:
    """One ``(sum rows, features)`` array; a lone part is passed through without a copy."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts, axis=0)


def split(outputs: Array, row_counts: Sequence[int]) -> list[Array]:
    """Views of ``outputs`` with ``row_counts[i]`` rows each, in order."""
    if len(row_counts) == 1:
        return [outputs]
    offsets = np.cumsum(row_counts)[:-1]
    return np.split(outputs, offsets, axis=0)
