"""The shared store: duplicates across connections (workers), the window, the memory bound."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from serving.feedback.store import Labelled, QualityStore


def item(n: int, issued_at: int = 1_000, true: int = 1, predicted: int = 1) -> Labelled:
    return Labelled(n.to_bytes(12, "big"), issued_at, true, predicted)


def store(path: Path | None, **kwargs: int) -> QualityStore:
    options = {"window": 5, "horizon_s": 100, "max_ids": 1000} | kwargs
    return QualityStore(path, **options)


def test_a_duplicate_seen_by_another_worker_is_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "q.sqlite3"  # the directory is created
    first, second = store(path), store(path)  # two workers' connections
    outcome = first.add([item(1), item(2), item(2)], now=1_010)
    assert (len(outcome.accepted), outcome.duplicates, outcome.unknown) == (2, 1, 0)
    outcome = second.add([item(1), item(3)], now=1_010)
    assert (len(outcome.accepted), outcome.duplicates) == (1, 1)
    true, _ = second.pairs()
    assert len(true) == 3


def test_window_keeps_the_last_pairs_in_order() -> None:
    quality = store(None)
    quality.add([item(n, true=n % 10, predicted=0) for n in range(12)], now=1_010)
    true, predicted = quality.pairs()
    assert true.tolist() == [7, 8, 9, 0, 1]
    assert predicted.tolist() == [0] * 5


def test_ids_leave_the_seen_set_after_the_horizon() -> None:
    quality = store(None)
    quality.add([item(1, issued_at=1_000), item(2, issued_at=1_050)], now=1_060)
    assert quality.seen_ids() == 2
    quality.add([], now=1_120)  # id 1 is past the horizon (verify() would refuse it too)
    assert quality.seen_ids() == 1


def test_past_max_ids_old_ids_become_unknown_never_double_counted() -> None:
    quality = store(None, max_ids=1000, horizon_s=10**9)
    quality.add([item(n, issued_at=n) for n in range(1, 1001)], now=2_000)
    assert quality.seen_ids() == 1000
    quality.add([item(5000, issued_at=1_500)], now=2_000)  # evicts the oldest
    assert quality.seen_ids() == 1000
    again = quality.add([item(1, issued_at=1)], now=2_000)
    assert (len(again.accepted), again.duplicates, again.unknown) == (0, 0, 1)


def test_bytes_per_remembered_id(tmp_path: Path) -> None:
    """The bound in docs/observability.md: file bytes per id in the duplicate set."""
    path = tmp_path / "q.sqlite3"
    quality = store(path, max_ids=100_000, horizon_s=10**9)
    ids = [Labelled(os.urandom(12), 1_000 + n // 100, 1, 1) for n in range(100_000)]
    for start in range(0, len(ids), 1000):
        quality.add(ids[start : start + 1000], now=5_000)
    quality.close()
    checkpoint = QualityStore(path, window=5, horizon_s=10**9, max_ids=100_000)
    checkpoint.close()
    size = path.stat().st_size + sum(
        p.stat().st_size for p in tmp_path.glob("q.sqlite3-*") if p.exists()
    )
    per_id = size / 100_000
    print(f"{per_id:.1f} bytes per remembered id")
    assert 20 < per_id < 120


def test_service_window_sums_live_workers_only() -> None:
    quality = store(None)
    quality.put_window(1, np.array([1, 2, 3]), now=100)
    quality.put_window(2, np.array([10, 20, 30]), now=100)
    assert quality.service_window(3, now=110).tolist() == [11, 22, 33]
    quality.put_window(1, np.array([1, 1, 1]), now=150)
    assert quality.service_window(3, now=150).tolist() == [1, 1, 1]  # worker 2 went stale
