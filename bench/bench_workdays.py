"""Benchmark: WorkingCalendar.add_working_days against a day-by-day loop over `holidays`, and
against workalendar's `add_working_days`, all giving the same answers.

The baseline is the day-by-day loop, timed in the same run on the same random anchors.

Run: .venv/bin/python bench/bench_workdays.py [--tiny] [--calls N]. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import sys
import time as timer
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

# Loaded from its path (the tests do), bench/ may not be on sys.path: benchlib adds the rest.
_BENCH = str(Path(__file__).resolve().parent)
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

import benchlib as lib  # noqa: E402

from bot.workdays import WorkingCalendar  # noqa: E402

LONDON = ZoneInfo("Europe/London")
CLOSE = time(17, 0)
Case = tuple[datetime, int]
# workalendar's UnitedKingdom lacks the bank holiday for King Charles III's coronation (the
# `holidays` package and gov.uk have it); its own `extra_holidays` argument adds it.
WORKALENDAR_MISSING = (date(2023, 5, 8),)


def make_cases(count: int, seed: int = 20261221) -> list[Case]:
    """Random aware anchors over 2019-2027 with n in 1..15, the same every run."""
    rng = random.Random(seed)
    first = datetime(2019, 1, 1, tzinfo=UTC)
    span = int((datetime(2027, 12, 31, tzinfo=UTC) - first).total_seconds())
    return [
        (first + timedelta(seconds=rng.randrange(span)), rng.randint(1, 15)) for _ in range(count)
    ]


def make_baseline() -> Callable[[datetime, int], datetime]:
    """The naive answer: step a day at a time, asking the `holidays` object about each."""
    # Years preloaded so the timing is of the lookups, not of `holidays` filling itself in.
    bank = holidays.country_holidays("GB", subdiv="ENG", years=range(2018, 2030))

    def add_working_days(anchor: datetime, n: int) -> datetime:
        day: date = anchor.astimezone(LONDON).date()
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            if day.weekday() < 5 and day not in bank:
                counted += 1
        return datetime.combine(day, CLOSE, tzinfo=LONDON).astimezone(UTC)

    return add_working_days


def make_workalendar() -> Callable[[datetime, int], datetime]:
    """workalendar's England and Wales calendar, answering in the same form as ours."""
    from workalendar.europe import UnitedKingdom

    calendar = UnitedKingdom()

    def add_working_days(anchor: datetime, n: int) -> datetime:
        day = calendar.add_working_days(
            anchor.astimezone(LONDON).date(), n, extra_holidays=WORKALENDAR_MISSING
        )
        return datetime.combine(day, CLOSE, tzinfo=LONDON).astimezone(UTC)

    return add_working_days


def calls_per_second(func: Callable[[datetime, int], datetime], cases: Sequence[Case]) -> float:
    """Best of three passes over the cases, in calls per second."""
    best = float("inf")
    for _ in range(3):
        started = timer.perf_counter()
        for anchor, n in cases:
            func(anchor, n)
        best = min(best, timer.perf_counter() - started)
    return len(cases) / best


def run(*, tiny: bool = False, calls: int | None = None) -> lib.Section:
    """Check the three agree on every case, then time them; raises if any answer differs."""
    started = timer.perf_counter()
    count = calls or (200 if tiny else 20_000)
    cases = make_cases(count)
    baseline = make_baseline()
    calendar = WorkingCalendar("ENG")
    rivals = {
        "WorkingCalendar.add_working_days (bisect)": calendar.add_working_days,
        "workalendar UnitedKingdom.add_working_days": make_workalendar(),
    }
    for name, func in rivals.items():
        mismatches = [(a, n) for a, n in cases if func(a, n) != baseline(a, n)]
        if mismatches:
            anchor, n = mismatches[0]
            raise RuntimeError(
                f"{name}: {len(mismatches)} of {count} answers differ from the loop's, e.g. "
                f"{anchor.isoformat()} + {n}: {func(anchor, n)} vs {baseline(anchor, n)}"
            )

    base_rate = calls_per_second(baseline, cases)
    section = lib.Section(
        5,
        "Working-day arithmetic",
        f"N working days from an anchor (England: weekends and bank holidays), {count:,} "
        "random anchors over 2019-2027 with N from 1 to 15, best of three passes. All three "
        "give the same answer for every anchor (checked before timing). Baseline: a "
        "day-by-day loop asking `holidays` about each day, in the same run.",
        ["implementation", "calls/s", "ratio to baseline"],
        rows=[["day-by-day loop over `holidays` (baseline)", f"{base_rate:,.0f}", "1.00x"]],
    )
    for name, func in rivals.items():
        rate = calls_per_second(func, cases)
        section.rows.append([name, f"{rate:,.0f}", lib.ratio(rate, base_rate)])
        section.data[name.split()[0]] = rate
    section.data["baseline"] = base_rate
    section.headline = ", ".join(f"{row[0].split()[0]} {row[-1]}" for row in section.rows[1:])
    section.headline += " the day-by-day loop"
    section.notes.append(
        "workalendar's `UnitedKingdom` calendar is England and Wales only and has no bank "
        "holiday for the 2023 coronation (8 May 2023); it is given that day through its own "
        "`extra_holidays` argument so that its answers match. It also walks day by day."
    )
    section.seconds = timer.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Check the implementations agree, time them, print the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", "--quick", action="store_true", help="a tiny run, for tests")
    parser.add_argument("--calls", type=int, default=None, help="calls per pass (default 20000)")
    args = parser.parse_args(argv)
    try:
        section = run(tiny=args.tiny, calls=args.calls)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(section.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
