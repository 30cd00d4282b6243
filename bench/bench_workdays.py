"""Benchmark: WorkingCalendar.add_working_days against a day-by-day loop over `holidays`.

Run: .venv/bin/python bench/bench_workdays.py [--quick] [--calls N]. Prints a markdown table.
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

# Run as a script, sys.path starts at bench/; the repo root holds the `bot` package.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from bot.workdays import WorkingCalendar  # noqa: E402

LONDON = ZoneInfo("Europe/London")
CLOSE = time(17, 0)
Case = tuple[datetime, int]


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


def calls_per_second(func: Callable[[datetime, int], datetime], cases: Sequence[Case]) -> float:
    """Best of three passes over the cases, in calls per second."""
    best = float("inf")
    for _ in range(3):
        started = timer.perf_counter()
        for anchor, n in cases:
            func(anchor, n)
        best = min(best, timer.perf_counter() - started)
    return len(cases) / best


def main(argv: Sequence[str] | None = None) -> int:
    """Check both implementations agree, time them, print the table; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--calls", type=int, default=None, help="calls per pass (default 20000)")
    args = parser.parse_args(argv)
    count = args.calls or (200 if args.quick else 20_000)

    cases = make_cases(count)
    baseline = make_baseline()
    calendar = WorkingCalendar("ENG")
    mismatches = [
        (anchor, n)
        for anchor, n in cases
        if calendar.add_working_days(anchor, n) != baseline(anchor, n)
    ]
    if mismatches:
        anchor, n = mismatches[0]
        print(
            f"{len(mismatches)} of {count} answers differ, e.g. {anchor.isoformat()} + {n}: "
            f"{calendar.add_working_days(anchor, n)} vs {baseline(anchor, n)}",
            file=sys.stderr,
        )
        return 1

    base_rate = calls_per_second(baseline, cases)
    rows = [
        ("day-by-day loop over `holidays` (baseline)", base_rate),
        (
            "WorkingCalendar.add_working_days (bisect)",
            calls_per_second(calendar.add_working_days, cases),
        ),
    ]
    print(f"add_working_days, ENG, {count} random anchors 2019-2027, n in 1..15, best of 3\n")
    print("| implementation | calls/s | ratio to baseline |")
    print("|---|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base_rate:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
