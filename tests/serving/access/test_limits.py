"""The token bucket, on a clock the test moves (no sleeping, no timing assertions)."""

from __future__ import annotations

import pytest

from serving.access.limits import TokenBucket


def test_a_full_bucket_lets_a_burst_through_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token takes 1/rate
    assert bucket.take(100.25) == pytest.approx(0.25)  # refused requests take nothing
    assert bucket.take(100.5) == 0.0
    assert bucket.take(100.5) == pytest.approx(0.5)


def test_tokens_never_exceed_the_burst() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=2.0, now=0.0)
    assert bucket.take(3600.0) == 0.0  # an hour idle earns 2 tokens, not 36,000
    assert bucket.take(3600.0) == 0.0
    assert bucket.take(3600.0) > 0.0


def test_a_slow_rate_waits_long() -> None:
    bucket = TokenBucket(rate_per_s=0.1, burst=1.0, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(1.0) == pytest.approx(9.0)


def test_reconfigure_keeps_earned_tokens_up_to_the_new_burst() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=10.0, now=0.0)
    for _ in range(8):
        bucket.take(0.0)
    bucket.reconfigure(rate_per_s=4.0, burst=10.0, now=1.0)  # 2 left + 1 earned at the old rate
    assert bucket.tokens == pytest.approx(3.0)
    bucket.reconfigure(rate_per_s=4.0, burst=2.0, now=1.0)
    assert bucket.tokens == pytest.approx(2.0)
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1.0) == pytest.approx(0.25)  # the new rate


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.5)])
def test_invalid_limits(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate_per_s > 0 and burst >= 1"):
        TokenBucket(rate, burst, now=0.0)
