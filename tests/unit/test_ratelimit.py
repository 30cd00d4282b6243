"""The per-person token bucket, on a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.clock import FakeClock
from bot.ratelimit import RateLimiter

START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_a_burst_goes_through_then_the_next_waits_for_a_refill() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(per_minute=10, clock=clock)
    assert [limiter.take("amara") for _ in range(10)] == [0.0] * 10
    assert limiter.take("amara") == pytest.approx(6.0)  # one call every 6 s at 10 a minute
    clock.advance(timedelta(seconds=3))
    assert limiter.take("amara") == pytest.approx(3.0)
    clock.advance(timedelta(seconds=3))
    assert limiter.take("amara") == 0.0


def test_each_person_has_their_own_bucket() -> None:
    limiter = RateLimiter(per_minute=2, clock=FakeClock(START))
    assert limiter.take("amara") == limiter.take("amara") == 0.0
    assert limiter.take("amara") > 0
    assert limiter.take("ben") == 0.0


def test_a_quiet_minute_fills_the_bucket_again_but_never_beyond_the_burst() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(per_minute=10, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("amara")
    clock.advance(timedelta(hours=5))
    assert [limiter.take("amara") for _ in range(3)] == [0.0] * 3
    assert limiter.take("amara") > 0


def test_a_clock_stepping_back_refills_nothing() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(per_minute=1, clock=clock)
    limiter.take("amara")
    clock.set(START - timedelta(hours=1))
    assert limiter.take("amara") > 0


def test_many_people_are_remembered_within_a_bound() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(per_minute=1, clock=clock)
    for i in range(25_000):
        limiter.take(f"user{i}")
    assert len(limiter._buckets) <= 10_000
    assert limiter.take("user24999") > 0, "the busiest recent callers are still held back"


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, clock=FakeClock(START))
    with pytest.raises(ValueError):
        RateLimiter(per_minute=5, burst=0, clock=FakeClock(START))


@settings(deadline=None, max_examples=100)
@given(
    per_minute=st.integers(1, 120),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=200),
)
def test_over_any_stretch_no_more_go_through_than_the_burst_and_the_refill_allow(
    per_minute: int, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(per_minute=per_minute, burst=burst, clock=clock)
    allowed = 0
    for gap in gaps:
        clock.advance(timedelta(seconds=gap))
        wait = limiter.take("x")
        assert wait >= 0.0
        allowed += wait == 0.0
    elapsed = (clock.now() - START).total_seconds()
    assert allowed <= burst + elapsed * per_minute / 60 + 1e-6
