"""Working days and hours of a UK nation: weekends, bank holidays, local closures, office hours.

Pure domain: imports the standard library and `holidays` only, and never reads the clock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

NATIONS = ("ENG", "WLS", "SCT", "NIR")

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Roughly 250 working days a year; used to load enough years in one step for long counts.
_MIN_WORKING_DAYS_PER_YEAR = 240


@dataclass(frozen=True)
class _Loaded:
    """Years first..last inclusive: weekday bank holidays, sorted working days, their closes."""

    first: int
    last: int
    bank_holidays: dict[date, str]
    working: list[date]
    # Close of business of working[i], in UTC: the time zone arithmetic is most of the cost of
    # a deadline, so it is done once per day rather than once per call.
    closes: list[datetime]


class WorkingCalendar:
    """Working days of one UK nation in one time zone, with local closures and office hours.

    Working hours are the half-open interval [start, end): 09:00 exactly is inside, 17:00
    exactly is outside, so a deadline at close of business is already out of hours.
    """

    def __init__(
        self,
        nation: str,
        *,
        closures: Iterable[date] = (),
        start: time = time(9, 0),
        end: time = time(17, 0),
        tz: str = "Europe/London",
    ) -> None:
        if nation not in NATIONS:
            raise ValueError(f"nation must be one of {', '.join(NATIONS)}, not {nation!r}")
        try:
            zone = ZoneInfo(tz)
        # OSError: a key naming a directory ("Europe") or too long for a file name.
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"unknown time zone {tz!r}: use an IANA name such as 'Europe/London'"
            ) from exc
        if start >= end:
            raise ValueError(
                f"the working day must start before it ends, not {start:%H:%M} to {end:%H:%M}"
            )
        self._nation = nation
        self._tz = zone
        self._start = start
        self._end = end
        self._closures = frozenset(_as_closure_day(c) for c in closures)
        # Built on first use: constructing a calendar (e.g. per policy) stays cheap.
        self._loaded: _Loaded | None = None

    @property
    def nation(self) -> str:
        """The nation whose bank holidays apply: ENG, WLS, SCT or NIR."""
        return self._nation

    @property
    def tz(self) -> ZoneInfo:
        """The time zone working hours are reckoned in."""
        return self._tz

    @property
    def start(self) -> time:
        """Opening time, local."""
        return self._start

    @property
    def end(self) -> time:
        """Close of business, local."""
        return self._end

    # --- days -----------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        """True unless `d` is a weekend, a bank holiday of the nation or a local closure."""
        loaded = self._cover(d.year, d.year)
        return self._is_working(d, loaded.bank_holidays)

    def bank_holidays(self, year: int) -> dict[date, str]:
        """The nation's bank holidays in `year`, name by date, in date order."""
        loaded = self._cover(year, year)
        return {d: name for d, name in sorted(loaded.bank_holidays.items()) if d.year == year}

    def working_days_in(self, start: date, end: date) -> list[date]:
        """The working days from `start` to `end`, both inclusive."""
        if end < start:
            return []
        loaded = self._cover(start.year, end.year)
        lo = bisect.bisect_left(loaded.working, start)
        hi = bisect.bisect_right(loaded.working, end)
        return loaded.working[lo:hi]

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after `d`."""
        loaded, index = self._nth_working_day_after(d, 1)
        return loaded.working[index]

    def working_days_between(self, start: datetime | date, end: datetime | date) -> int:
        """How many working days fall after `start`'s local date, up to and including `end`'s."""
        first = self._local_date(start)
        last = self._local_date(end)
        if last <= first:
            return 0
        loaded = self._cover(first.year, last.year)
        return bisect.bisect_right(loaded.working, last) - bisect.bisect_right(
            loaded.working, first
        )

    # --- deadlines ------------------------------------------------------------------------

    def add_working_days(self, anchor: datetime | date, n: int) -> datetime:
        """Close of business on the `n`th working day after the anchor's local date (UTC)."""
        if n < 1:
            raise ValueError(f"a deadline in working days needs at least 1 day, not {n}")
        loaded, index = self._nth_working_day_after(self._local_date(anchor), n)
        return loaded.closes[index]

    def same_working_day(self, anchor: datetime) -> datetime:
        """Close of the anchor's day if it is a working day and still open, else of the next."""
        day = self._local_date(anchor)
        if self.is_working_day(day) and anchor < self.close_of(day):
            return self.close_of(day)
        return self.close_of(self.next_working_day(day))

    # --- hours ----------------------------------------------------------------------------

    def close_of(self, d: date) -> datetime:
        """Close of business on local date `d`, as an aware UTC datetime."""
        return datetime.combine(d, self._end, tzinfo=self._tz).astimezone(UTC)

    def opening_of(self, d: date) -> datetime:
        """Opening time on local date `d`, as an aware UTC datetime."""
        return datetime.combine(d, self._start, tzinfo=self._tz).astimezone(UTC)

    def in_working_hours(self, at: datetime) -> bool:
        """True if `at` falls on a working day within [start, end)."""
        day = self._local_date(at)
        return self.is_working_day(day) and self.opening_of(day) <= at < self.close_of(day)

    def next_working_moment(self, at: datetime) -> datetime:
        """`at` itself if in working hours, else the next opening time (UTC)."""
        day = self._local_date(at)
        if self.is_working_day(day):
            if at < self.opening_of(day):
                return self.opening_of(day)
            if at < self.close_of(day):
                return at.astimezone(UTC)
        return self.opening_of(self.next_working_day(day))

    def local(self, at: datetime) -> datetime:
        """`at` in the calendar's time zone."""
        _require_aware(at)
        return at.astimezone(self._tz)

    # --- internals ------------------------------------------------------------------------

    def _local_date(self, value: datetime | date) -> date:
        # datetime is a subclass of date, so it must be tested first.
        if isinstance(value, datetime):
            _require_aware(value)
            return value.astimezone(self._tz).date()
        return value

    def _is_working(self, d: date, bank_holidays: dict[date, str]) -> bool:
        return d.weekday() < 5 and d not in bank_holidays and d not in self._closures

    def _nth_working_day_after(self, d: date, n: int) -> tuple[_Loaded, int]:
        # Load enough years up front that a long count rarely needs a second extension.
        loaded = self._cover(d.year, d.year + n // _MIN_WORKING_DAYS_PER_YEAR + 1)
        while True:
            index = bisect.bisect_right(loaded.working, d) + n - 1
            if index < len(loaded.working):
                return loaded, index
            if loaded.last >= MAXYEAR:
                raise ValueError(f"{n} working days after {d} is beyond the year {MAXYEAR}")
            loaded = self._cover(loaded.first, loaded.last + 1)

    def _cover(self, first: int, last: int) -> _Loaded:
        """The loaded range, extended (both ways) to include years first..last."""
        loaded = self._loaded
        if loaded is not None and loaded.first <= first and last <= loaded.last:
            return loaded
        if loaded is None:
            # A year either side, so deadlines near New Year need no reload.
            new_first, new_last = max(first - 1, MINYEAR), min(last + 1, MAXYEAR)
            bank = self._load_bank_holidays(new_first, new_last)
        else:
            new_first = max(min(first, loaded.first), MINYEAR)
            new_last = min(max(last, loaded.last), MAXYEAR)
            bank = dict(loaded.bank_holidays)
            if new_first < loaded.first:
                bank.update(self._load_bank_holidays(new_first, loaded.first - 1))
            if new_last > loaded.last:
                bank.update(self._load_bank_holidays(loaded.last + 1, new_last))
        # Ordinals, not `day += 1 day`, which overflows after 31 Dec 9999.
        days = map(
            date.fromordinal,
            range(date(new_first, 1, 1).toordinal(), date(new_last, 12, 31).toordinal() + 1),
        )
        working = [day for day in days if self._is_working(day, bank)]
        closes = [self.close_of(d) for d in working]
        # One assignment of a finished snapshot: a reader never sees a half-built range.
        self._loaded = _Loaded(new_first, new_last, bank, working, closes)
        return self._loaded

    def _load_bank_holidays(self, first: int, last: int) -> dict[date, str]:
        # Without subdiv, `holidays` gives only the UK-wide days (no Easter Monday in England,
        # no August bank holiday), so the nation is always passed.
        found = holidays.country_holidays("GB", subdiv=self._nation, years=range(first, last + 1))
        # `holidays` also lists a holiday's nominal date when it falls on a weekend (e.g. Sat
        # 25 Dec 2021) beside its weekday substitute; only the substitute is a bank holiday in
        # the official list, and weekends are never working days anyway.
        return {
            d: name.replace(" (observed)", " (substitute day)")
            for d, name in found.items()
            if d.weekday() < 5 and first <= d.year <= last
        }


def format_when(
    at: datetime, tz: ZoneInfo | str = "Europe/London", *, now: datetime | None = None
) -> str:
    """`at` as e.g. 'Wed 2 Dec, 17:00' local; the year is added when it differs from `now`'s."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    _require_aware(at)
    local = at.astimezone(zone)
    day = f"{_DAY_NAMES[local.weekday()]} {local.day} {_MONTH_NAMES[local.month - 1]}"
    if now is not None:
        _require_aware(now)
        if now.astimezone(zone).year != local.year:
            day = f"{day} {local.year}"
    return f"{day}, {local:%H:%M}"


def format_day(d: date) -> str:
    """`d` as e.g. 'Wed 2 Dec 2026'."""
    return f"{_DAY_NAMES[d.weekday()]} {d.day} {_MONTH_NAMES[d.month - 1]} {d.year}"


def _as_closure_day(value: object) -> date:
    # A datetime never equals a date, so one slipped in would silently close nothing.
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise ValueError(f"a closure day must be a date, not {value!r}")


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"expected a time-zone-aware datetime (all times are), not naive {at}")
