"""Benchmark: Service.tick() as open disputes grow (1,000, 10,000, 100,000), 100 of them due.

The target is a flat tick: finding what is due is one indexed query, and each due dispute is
one unit of work, so the time should not grow with the disputes that are not due. The baseline
is the tick with 1,000 open disputes, on the same database, in the same run.

Two moments of a working day are measured, because the tick also asks for the daily digest:
before the digest time (09:10) and after it (10:00, the digest already sent that morning, as
it is at every tick of the day but one; benchmark 4 times the digest itself).

Run: .venv/bin/python bench/bench_tick.py [--tiny]
"""

from __future__ import annotations

import argparse
import time as timer
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import benchlib as lib
from sqlalchemy import text

from bot.clock import FakeClock

# Opened on Thu 26 Nov (benchlib.OPENED), a dispute's first reminder is due Mon 30 Nov 09:00.
BEFORE_DIGEST = datetime(2026, 11, 30, 9, 10, tzinfo=UTC)
AFTER_DIGEST = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
# Opened in January, a dispute has no deadline near the digest's horizon on 30 Nov.
LATER = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


@dataclass
class Level:
    """The ticks measured with `size` open disputes on one backend."""

    size: int
    before: list[float] = field(default_factory=list)  # seconds per tick, before the digest time
    after: list[float] = field(default_factory=list)  # seconds per tick, after it
    fired: int = 0
    seeding: float = 0.0  # seconds spent inserting this level's disputes (not ticking)


@dataclass
class Run:
    """One backend's levels, and what the run spent its time on."""

    levels: list[Level]
    digest_time: str  # the partnership's, e.g. "09:30"
    seconds: float = 0.0


def measure(
    url: str,
    sizes: Sequence[int],
    *,
    due: int,
    ticks_before: Sequence[int],
    ticks_after: Sequence[int],
) -> Run:
    """Grow one database through `sizes`, timing `ticks_before[i]` and `ticks_after[i]` ticks
    at size i."""
    began = timer.perf_counter()
    clock = FakeClock(BEFORE_DIGEST)
    core = lib.make_core(url, clock)
    store = core.store
    try:
        due_template = lib.open_template(core, clock, lib.OPENED)
        idle_template = lib.open_template(core, clock, LATER)
        with store.unit() as session:
            # The templates never tick themselves: only their copies are due.
            session.execute(
                text("UPDATE disputes SET wake_at = NULL WHERE ref IN (:a, :b)"),
                {"a": due_template, "b": idle_template},
            )
            # The morning's digest has gone: later ticks are the steady state of a working day.
            local_day = core.partnership.calendar.local(AFTER_DIGEST).date()
            store.run_once(session, f"digest:{core.partnership.id}:{local_day}", now=AFTER_DIGEST)
        # One tick before any is timed: the first in a fresh process fills its caches.
        warm = min(due, 10)
        lib.copy_dispute(
            store, due_template, "DUE-2026-", warm, wake_at=BEFORE_DIGEST - timedelta(minutes=1)
        )
        if core.service.tick(limit=warm).fired < warm:
            raise RuntimeError("the warm-up tick fired nothing")
        lib.delete_disputes(store, "DUE-2026-")
        idle = 0
        levels = []
        for index, size in enumerate(sizes):
            want = size - due - 2  # the two templates are open disputes too
            seeding = timer.perf_counter()
            idle += lib.copy_dispute(
                store,
                idle_template,
                f"IDLE{chr(ord('A') + index)}-2027-",
                want - idle,
                wake_at=lib.FAR_FUTURE,
            )
            level = Level(size, seeding=timer.perf_counter() - seeding)
            for moment, count, times in (
                (BEFORE_DIGEST, ticks_before[index], level.before),
                (AFTER_DIGEST, ticks_after[index], level.after),
            ):
                for _ in range(count):
                    clock.set(moment)
                    lib.copy_dispute(
                        store, due_template, "DUE-2026-", due, wake_at=moment - timedelta(minutes=1)
                    )
                    assert lib.count_open(store) == size, "the database has the wrong size"
                    started = timer.perf_counter()
                    report = core.service.tick(limit=due)
                    times.append(timer.perf_counter() - started)
                    if report.fired < due:
                        raise RuntimeError(f"{report.fired} timers fired; {due} were due")
                    level.fired += report.fired
                    lib.delete_disputes(store, "DUE-2026-")
            levels.append(level)
        digest_time = f"{core.partnership.config.digest_time:%H:%M}"
        return Run(levels, digest_time, timer.perf_counter() - began)
    finally:
        store.dispose()


def run(*, tiny: bool = False, pg: object | None = None) -> lib.Section:
    """Both backends; a tiny database in tiny mode."""
    started = timer.perf_counter()
    sizes: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    if tiny:
        sizes, due, before, after = (60, 120), 10, (1, 1), (1, 1)
    else:
        # Each tick fires 100 reminders, a second or two: two ticks at each moment at the sizes
        # the targets compare, one at 10,000, keep each backend well within half a minute.
        sizes, due, before, after = (1_000, 10_000, 100_000), 100, (2, 1, 2), (2, 1, 2)
    results: dict[str, Run] = {}
    with lib.scratch("bench-tick-") as tmp:
        results["SQLite"] = measure(
            f"sqlite:///{tmp}/tick.db", sizes, due=due, ticks_before=before, ticks_after=after
        )
    with lib.postgres() if pg is None else nullcontext(pg) as server:
        url = server.create_database()  # type: ignore[attr-defined]
        try:
            results["PostgreSQL"] = measure(
                url, sizes, due=due, ticks_before=before, ticks_after=after
            )
        finally:
            server.drop_database(url.rsplit("/", 1)[1])  # type: ignore[attr-defined]

    digest_time = next(iter(results.values())).digest_time
    section = lib.Section(
        3,
        "The tick as disputes grow",
        f"`Service.tick()` with {', '.join(f'{s:,}' for s in sizes)} open disputes, {due} of "
        "them due (each tick fires their reminders). The median of the ticks (n in each cell) "
        f"before the digest time ({BEFORE_DIGEST:%H:%M}; the partnership's digest time is "
        f"{digest_time}) and after it ({AFTER_DIGEST:%H:%M}, the morning's digest already "
        "sent). Baseline: the same tick with "
        f"{sizes[0]:,} open disputes on the same database in this run.",
        [
            "backend",
            "open disputes",
            f"tick before {digest_time}",
            "ratio",
            f"tick after {digest_time}",
            "ratio",
        ],
    )
    worst: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for backend, result in results.items():
        levels = result.levels
        base_before = lib.median(levels[0].before)
        base_after = lib.median(levels[0].after)
        for level in levels:
            b, a = lib.median(level.before), lib.median(level.after)
            section.rows.append(
                [
                    backend,
                    f"{level.size:,}",
                    f"{lib.ms(b)} (n={len(level.before)})",
                    lib.ratio(b, base_before),
                    f"{lib.ms(a)} (n={len(level.after)})",
                    lib.ratio(a, base_after),
                ]
            )
            key = f"{backend.lower()}.{level.size}"
            section.data[f"{key}.before"] = b
            section.data[f"{key}.after"] = a
            section.data[f"{key}.fired"] = level.fired
        worst_before = lib.median(levels[-1].before) / base_before
        worst_after = lib.median(levels[-1].after) / base_after
        worst["before"][backend] = worst_before
        worst["after"][backend] = worst_after
        section.verdicts.append(
            lib.Verdict(
                f"{backend}: tick flat (within 1.5x of {sizes[0]:,}) at {sizes[-1]:,}, before "
                "the digest time",
                worst_before <= 1.5,
                f"{worst_before:.2f}x.",
            )
        )
        section.verdicts.append(
            lib.Verdict(
                f"{backend}: the same after the digest time",
                worst_after <= 1.5,
                f"{worst_after:.2f}x.",
            )
        )

    def each(values: dict[str, float]) -> str:
        return " and ".join(f"{v:.2f}x ({b})" for b, v in values.items())

    flat_before = all(r <= 1.5 for r in worst["before"].values())
    flat_after = all(r <= 1.5 for r in worst["after"].values())
    section.notes.append(
        "What is due is found with one indexed query (`wake_at`), so the disputes that are not "
        "due should cost the tick no more than a deeper index: "
        + (
            f"at {sizes[-1]:,} open disputes the tick took {each(worst['before'])} what it "
            f"took at {sizes[0]:,}, within the target."
            if flat_before
            else f"yet at {sizes[-1]:,} open disputes the tick took {each(worst['before'])} "
            f"what it took at {sizes[0]:,} in this run, outside the target."
        )
        + " After the digest time each tick also calls `send_digest_if_due()`, which finds "
        "the day's once-a-day key already claimed (`Store.has_run`, a primary-key lookup) and "
        "returns before building the digest; "
        + (
            f"so the tick after {digest_time} is flat too: {each(worst['after'])}."
            if flat_after
            else f"yet after {digest_time} the tick took {each(worst['after'])} in this run, "
            "outside the target."
        )
        + " Only the day's first tick after the digest time builds it, from the disputes due "
        "within a working day and a count of the rest (benchmark 4)."
    )
    per_dispute = {
        b: lib.median(r.levels[0].before) / due for b, r in results.items()
    }  # seconds per due dispute, at the smallest size
    section.notes.append(
        "Flat, but not cheap: each due dispute is its own unit of work (load, fire, save the "
        "state, events, deadlines, participants and messages); the tick at "
        f"{sizes[0]:,} took "
        + " and ".join(f"{lib.ms(t)} per due dispute on {b}" for b, t in per_dispute.items())
        + "."
    )
    section.notes.append(
        f"The disputes are copies of two real disputes, inserted in bulk with SQL "
        f"(`bench/benchlib.py` `copy_dispute`): the {due} due ones are re-inserted before "
        "each tick, so every tick does the same work. Each backend took about "
        + " and ".join(
            f"{r.seconds:.0f} s ({b}: {sum(t for lv in r.levels for t in lv.before + lv.after):.0f}"
            f" s of it in the timed ticks, {sum(lv.seeding for lv in r.levels):.0f} s seeding "
            "the disputes not due)"
            for b, r in results.items()
        )
        + "."
    )
    section.seconds = timer.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Print the section as markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a tiny run, for the test suite")
    args = parser.parse_args(argv)
    print(run(tiny=args.tiny).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
