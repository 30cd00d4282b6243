"""How fast one person may call a command: a token bucket per key, on an injected clock.

Pure: the standard library and the Clock protocol only, so tests run it on simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.clock import Clock

# Buckets for this many keys at most; full ones are dropped first (they hold nothing to forget).
MAX_KEYS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: datetime


class RateLimiter:
    """Up to `burst` calls at once per key, refilled at `per_minute` calls a minute."""

    def __init__(self, *, per_minute: int, clock: Clock, burst: int | None = None) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.rate = per_minute / 60.0  # tokens a second
        self.capacity = float(burst if burst is not None else per_minute)
        if self.capacity < 1:
            raise ValueError("burst must be at least 1")
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """0.0 if `key` may go now (using up one call), else the seconds until it may."""
        now = self.clock.now()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_KEYS:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        # A clock that steps back (a corrected system clock) refills nothing rather than less.
        elapsed = max((now - bucket.at).total_seconds(), 0.0)
        bucket.tokens = min(self.capacity, bucket.tokens + elapsed * self.rate)
        bucket.at = max(now, bucket.at)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _forget_full(self, now: datetime) -> None:
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + max((now - b.at).total_seconds(), 0.0) * self.rate >= self.capacity
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= MAX_KEYS:
            # Everyone is busy at once: forget the oldest half rather than grow without bound.
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].at)
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]
