"""Merge the requests of a batch into one input array and split the outputs back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving.batching.request import Array, Outputs


def merge(parts: Sequence[Array]) -> Array:
    """One ``(sum rows, features)`` array; a lone part is passed through without a copy."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts, axis=0)


def split(outputs: Outputs, row_counts: Sequence[int]) -> list[Outputs]:
    """Views of ``outputs`` with ``row_counts[i]`` rows each, in order (slices: cheaper than
    ``np.split`` for the few dozen requests of a batch)."""
    if len(row_counts) == 1:
        return [outputs]
    parts = []
    start = 0
    for count in row_counts:
        parts.append(outputs.slice(start, start + count))
        start += count
    return parts
