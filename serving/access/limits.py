"""Per-key rate limits: one token bucket per key and per worker process.

Per worker because each worker is its own process with its own event loop: a shared counter
would need a lock or a round trip on every request, which the 3 % latency budget of keys does
not allow. With N workers a key gets up to N times its rate in the worst case (docs/security.md
says so). A bucket is touched only from its worker's event loop, so no lock is needed.
"""

from __future__ import annotations


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` kept; a request takes one.

    Starts full, so a client's first ``burst`` requests pass at once. O(1) and allocation-free.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_per_s > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def take(self, now: float) -> float:
        """Take a token at ``now`` (time.monotonic()): 0.0 if there was one, else the seconds
        until there will be one (nothing is taken then)."""
        tokens = self._tokens + (now - self._stamp) * self.rate_per_s
        if tokens > self.burst:
            tokens = self.burst
        self._stamp = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return 0.0
        self._tokens = tokens
        return (1.0 - tokens) / self.rate_per_s

    def reconfigure(self, rate_per_s: float, burst: float, now: float) -> None:
        """New limits for the same key (a reloaded keys file): tokens earned so far are kept,
        up to the new burst, so a rotation neither refills nor drains a busy client."""
        self.refill(now)
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = min(self._tokens, burst)

    def refill(self, now: float) -> None:
        """Bring the bucket up to ``now`` without taking a token."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens at the last update (for tests and introspection)."""
        return self._tokens
