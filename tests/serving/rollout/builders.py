"""Evidence built by hand for the judge, store and worker tests."""

from __future__ import annotations

import msgspec
import numpy as np

from serving.rollout.evidence import (
    LATENCY_BINS,
    LATENCY_EDGES,
    Evidence,
    PairCounts,
    VersionCounts,
)


def counts(rows: int, errors: int = 0, **fields: object) -> VersionCounts:
    """``rows`` rows in batches of one, those answered spread evenly over the classes with a
    mean confidence of 0.9, all in one latency bin; ``fields`` override."""
    answered = rows - errors
    base = VersionCounts(
        rows=rows,
        errors=errors,
        batches=rows,
        classes=tuple([answered // 10] * 10),
        confidence_sum=0.9 * answered,
        confidence_squares=0.82 * answered,
        latency=latency_bins({2e-4: rows}),
    )
    return msgspec.structs.replace(base, **fields)


def latency_bins(samples: dict[float, int]) -> tuple[int, ...]:
    cells = [0] * LATENCY_BINS
    for seconds, n in samples.items():
        cells[int(np.searchsorted(LATENCY_EDGES, seconds, side="right")) - 1] += n
    return tuple(cells)


def evidence(stable: VersionCounts, candidate: VersionCounts, **pairs: object) -> Evidence:
    return msgspec.structs.replace(
        Evidence.empty(1, 2, 10),
        stable=stable,
        candidate=candidate,
        pairs=msgspec.structs.replace(PairCounts.empty(10), **pairs),
    )


def diagonal(rows: int) -> tuple[int, ...]:
    return tuple((rows // 10) if i % 11 == 0 else 0 for i in range(100))


def good_shadow(rows: int, stable: int = 1, candidate: int = 2) -> Evidence:
    """``rows`` rows both versions computed and answered the same (a good candidate)."""
    both = counts(rows)
    return msgspec.structs.replace(
        evidence(both, both, rows=rows, confusion=diagonal(rows)),
        stable_version=stable,
        candidate_version=candidate,
    )
