"""The batcher's measured service rate: what admission multiplies the batches ahead by."""

from __future__ import annotations

import pytest

from serving.batching.throughput import FASTEST_OF, ThroughputMeter


def test_no_estimate_before_the_first_batch() -> None:
    meter = ThroughputMeter()
    assert meter.seconds_per_batch is None
    assert meter.wait_s(1000, 32) == 0.0


def test_the_wait_counts_whole_batches_ahead() -> None:
    meter = ThroughputMeter()
    meter.record(taken_at=5.0, finished_at=5.1, backlog=False)
    assert meter.seconds_per_batch == pytest.approx(0.1)
    assert meter.wait_s(32, 32) == pytest.approx(0.1)
    assert meter.wait_s(33, 32) == pytest.approx(0.2)
    assert meter.wait_s(640, 32) == pytest.approx(2.0)
    assert meter.wait_s(0, 32) == 0.0


def test_back_to_back_batches_are_timed_from_the_previous_end() -> None:
    """Under backlog the gap between batches (event-loop work) counts: it is real service time."""
    meter = ThroughputMeter(rise=1.0, fall=1.0)
    meter.record(taken_at=0.0, finished_at=1.0, backlog=True)
    meter.record(taken_at=1.5, finished_at=2.0, backlog=False)
    assert meter.seconds_per_batch == pytest.approx(1.0)  # 2.0 - 1.0
    meter.record(taken_at=3.0, finished_at=3.2, backlog=False)
    assert meter.seconds_per_batch == pytest.approx(0.2)  # idle again: from its own start


def batches(meter: ThroughputMeter, count: int, seconds: float) -> None:
    for step in range(count):
        start = 1000.0 + step
        meter.record(taken_at=start, finished_at=start + seconds, backlog=False)


def test_a_slowdown_is_followed_faster_than_a_speed_up() -> None:
    meter = ThroughputMeter(rise=0.5, fall=0.1)
    batches(meter, 1, 0.001)
    batches(meter, 3, 0.01)  # slower: most of the way there in three batches
    assert meter.seconds_per_batch == pytest.approx(0.01 - 0.009 / 8)
    batches(meter, 3, 0.001)  # faster again: trusted only gradually
    assert meter.seconds_per_batch is not None
    assert meter.seconds_per_batch > 0.006
    batches(meter, 60, 0.001)
    assert meter.seconds_per_batch == pytest.approx(0.001, rel=0.02)


def test_the_idle_batch_time_ignores_backlog_gaps() -> None:
    """What a request that nothing is ahead of waits: batches started on an idle batcher only."""
    meter = ThroughputMeter(rise=1.0, fall=1.0)
    assert meter.idle_batch_s == 0.0
    meter.record(taken_at=0.0, finished_at=0.002, backlog=True)
    meter.record(taken_at=5.0, finished_at=5.001, backlog=True)  # 4.998 s after the last end
    assert meter.seconds_per_batch == pytest.approx(4.999)
    assert meter.idle_batch_s == pytest.approx(0.002)
    meter.record(taken_at=9.0, finished_at=9.003, backlog=False)  # after the backlog
    meter.record(taken_at=10.0, finished_at=10.004, backlog=False)  # idle start: counted
    assert meter.idle_batch_s == pytest.approx(0.004)


def test_the_fastest_idle_batch_ignores_a_stall() -> None:
    """Admission judges a lone request by what the service does at its best: one batch that
    stalled for seconds (a held GIL, a starved CPU) does not make every short deadline look
    impossible, while the average follows the stall."""
    meter = ThroughputMeter()
    assert meter.fastest_idle_s == 0.0
    for start in range(5):
        meter.record(taken_at=float(start), finished_at=start + 0.002, backlog=False)
    meter.record(taken_at=10.0, finished_at=13.0, backlog=False)  # a 3 s stall
    assert meter.fastest_idle_s == pytest.approx(0.002)
    assert meter.idle_batch_s > 1.0


def test_the_fastest_idle_batch_is_of_the_last_64() -> None:
    """An old fast batch leaves the window: 64 slower ones later, the fastest is theirs."""
    meter = ThroughputMeter()
    meter.record(taken_at=0.0, finished_at=0.001, backlog=False)
    for start in range(1, FASTEST_OF):
        meter.record(taken_at=float(start), finished_at=start + 0.003, backlog=False)
    assert meter.fastest_idle_s == pytest.approx(0.001)  # still in the window
    meter.record(taken_at=100.0, finished_at=100.005, backlog=False)  # pushes the 0.001 out
    assert meter.fastest_idle_s == pytest.approx(0.003)
