"""Per-client token buckets, so one address cannot flood a form."""

from __future__ import annotations

import time


class RateLimiter:
    """``limit`` submissions per ``window`` seconds per key, refilled continuously."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        self.limit = float(limit)
        self.rate = limit / window
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def hit(self, key: str, now: float | None = None) -> float:
        """Take one token; return 0 when allowed, else seconds until the next token."""
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.get(key, (self.limit, now))
        tokens = min(self.limit, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > self.max_keys:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        full_after = self.limit / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
