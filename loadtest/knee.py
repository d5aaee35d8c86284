"""Per-step statistics of a step load and the knee: the highest throughput still within budget.

Each step's numbers come from the difference between two snapshots of the cumulative response
time histogram (taken after the step's warm-up and at its end), so a step is judged on its own
requests, not on the whole run so far.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative counters at one instant (``histogram`` maps bucketed ms to counts)."""

    at: float
    requests: int
    failures: int
    histogram: Mapping[float, int]


@dataclass(frozen=True, slots=True)
class StepStats:
    users: int
    seconds: float
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def row(self) -> str:
        return (
            f"users={self.users:<4d} rps={self.rps:8.1f} p50_ms={self.p50_ms:8.3f} "
            f"p95_ms={self.p95_ms:8.3f} p99_ms={self.p99_ms:8.3f} "
            f"error_rate={self.error_rate:.4f} requests={self.requests}"
        )


def percentile(histogram: Mapping[float, int], fraction: float) -> float:
    """The smallest bucket at or below which ``fraction`` of the counted requests fall."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    threshold = fraction * total
    running = 0
    for bucket in sorted(histogram):
        running += histogram[bucket]
        if running >= threshold:
            return float(bucket)
    return float(max(histogram))


def step_stats(users: int, start: Snapshot, end: Snapshot) -> StepStats:
    """Stats of the requests completed between two snapshots."""
    delta = {
        bucket: count - start.histogram.get(bucket, 0)
        for bucket, count in end.histogram.items()
        if count - start.histogram.get(bucket, 0) > 0
    }
    seconds = max(end.at - start.at, 1e-9)
    requests = end.requests - start.requests
    return StepStats(
        users=users,
        seconds=seconds,
        requests=requests,
        failures=end.failures - start.failures,
        rps=requests / seconds,
        p50_ms=percentile(delta, 0.50),
        p95_ms=percentile(delta, 0.95),
        p99_ms=percentile(delta, 0.99),
    )


def find_knee(
    steps: list[StepStats], p95_budget_ms: float, max_error_rate: float
) -> StepStats | None:
    """The step with the highest rps whose p95 and error rate stay within bounds (None if none)."""
    within = [
        s
        for s in steps
        if s.requests > 0 and s.p95_ms <= p95_budget_ms and s.error_rate <= max_error_rate
    ]
    return max(within, key=lambda s: s.rps, default=None)
