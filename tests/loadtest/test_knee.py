"""Step-load bookkeeping: per-step stats from histogram snapshots, and the knee."""

from __future__ import annotations

from loadtest.knee import Snapshot, StepStats, find_knee, percentile, step_stats


def test_percentile_of_a_histogram() -> None:
    histogram = {0.5: 90, 2.0: 5, 30.0: 5}
    assert percentile(histogram, 0.5) == 0.5
    assert percentile(histogram, 0.95) == 2.0
    assert percentile(histogram, 0.99) == 30.0
    assert percentile({}, 0.95) == 0.0


def test_step_stats_count_only_the_step_requests() -> None:
    start = Snapshot(at=10.0, requests=100, failures=1, histogram={1.0: 100})
    end = Snapshot(at=12.0, requests=300, failures=3, histogram={1.0: 100, 5.0: 190, 40.0: 10})
    stats = step_stats(users=8, start=start, end=end)
    assert stats.requests == 200
    assert stats.rps == 100.0
    assert stats.error_rate == 0.01
    assert stats.p50_ms == 5.0  # the 100 earlier 1 ms requests are not in this step
    assert stats.p99_ms == 40.0


def step(users: int, rps: float, p95: float, failures: int = 0) -> StepStats:
    return StepStats(users, 5.0, 1000, failures, rps, p95 / 2, p95, p95 * 2)


def test_knee_is_the_fastest_step_within_budget() -> None:
    steps = [step(4, 800, 3), step(8, 1500, 9), step(12, 1700, 25), step(16, 1600, 60)]
    knee = find_knee(steps, p95_budget_ms=20, max_error_rate=0.01)
    assert knee is not None
    assert knee.users == 8


def test_knee_ignores_steps_with_errors_and_may_be_none() -> None:
    steps = [step(4, 800, 3), step(8, 1500, 9, failures=500)]
    knee = find_knee(steps, 20, 0.01)
    assert knee is not None
    assert knee.users == 4
    assert find_knee([step(4, 800, 30)], 20, 0.01) is None
