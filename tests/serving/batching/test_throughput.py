"""The batcher's measured service rate: what admission multiplies queued rows by."""

from __future__ import annotations

import pytest

from serving.batching.throughput import ThroughputMeter


def test_no_estimate_before_the_first_batch() -> None:
    meter = ThroughputMeter()
    assert meter.seconds_per_row is None
    assert meter.wait_s(1000) == 0.0


def test_an_idle_batch_is_timed_from_when_it_was_taken() -> None:
    meter = ThroughputMeter()
    meter.record(rows=10, taken_at=5.0, finished_at=5.1, backlog=False)
    assert meter.seconds_per_row == pytest.approx(0.01)
    assert meter.wait_s(50) == pytest.approx(0.5)


def test_back_to_back_batches_are_timed_from_the_previous_end() -> None:
    """Under backlog the gap between batches (event-loop work) counts: it is real service time."""
    meter = ThroughputMeter(smoothing=1.0)
    meter.record(rows=4, taken_at=0.0, finished_at=1.0, backlog=True)
    meter.record(rows=4, taken_at=1.5, finished_at=2.0, backlog=False)
    assert meter.seconds_per_row == pytest.approx(0.25)  # (2.0 - 1.0) / 4
    meter.record(rows=4, taken_at=3.0, finished_at=3.2, backlog=False)
    assert meter.seconds_per_row == pytest.approx(0.05)  # idle again: from its own start


def test_the_average_follows_a_change_within_a_few_batches() -> None:
    meter = ThroughputMeter(smoothing=0.2)
    meter.record(rows=1, taken_at=0.0, finished_at=0.001, backlog=False)
    for step in range(20):
        start = 1.0 + step
        meter.record(rows=1, taken_at=start, finished_at=start + 0.01, backlog=False)
    assert meter.seconds_per_row == pytest.approx(0.01, rel=0.02)
