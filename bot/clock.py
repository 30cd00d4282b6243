"""Clocks: the real one for production, a settable one for tests and the demo.

The domain never reads the clock; the service and timekeeper are given one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that says what time it is (aware UTC)."""

    def now(self) -> datetime:
        """The current time."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        """The current time, UTC."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told: two weeks of a dispute in milliseconds."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        """The simulated time."""
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to `when`."""
        self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta` and return the new time."""
        self._now += delta
        return self._now
