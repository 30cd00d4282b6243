"""Run every benchmark and write BENCHMARKS.md: `make bench`.

Each figure is a ratio to a baseline measured in the same run (the machine is shared and
noisy), with the absolute numbers beside it and the machine described at the top. A benchmark
that fails is reported in the file as failed, and the run exits 1.

Run: .venv/bin/python bench/run.py [--tiny] [--only NAME ...] [--output PATH]
"""

from __future__ import annotations

import argparse
import sys
import time as timer
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

# Run as a script, sys.path starts at bench/; loaded from its path (the tests), it may not.
_BENCH = str(Path(__file__).resolve().parent)
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

import benchlib as lib  # noqa: E402

NAMES = ("slack", "teams", "tick", "digest", "workdays", "outbox", "memory")
TITLES = {
    "slack": (1, "Slack acknowledgement latency"),
    "teams": (2, "Teams message latency"),
    "tick": (3, "The tick as disputes grow"),
    "digest": (4, "The digest"),
    "workdays": (5, "Working-day arithmetic"),
    "outbox": (6, "Outbox throughput"),
    "memory": (7, "Memory"),
}


def teams_ready() -> str | None:
    """None if the Teams adapter serves `/api/messages`; else why the benchmark cannot run."""
    if not (lib.ROOT / "bot" / "adapters" / "teams").is_dir():
        return "not yet: needs the Teams adapter (bot/adapters/teams/)"
    if "/api/messages" not in (lib.ROOT / "bot" / "web.py").read_text():
        return "not yet: needs the Teams adapter's `/api/messages` route in bot/web.py"
    return None


def benchmarks(tiny: bool, pg: object) -> dict[str, Callable[[], lib.Section]]:
    """Each benchmark, ready to run; the PostgreSQL server shared by those that use one."""
    import bench_digest
    import bench_memory
    import bench_outbox
    import bench_slack
    import bench_tick
    import bench_workdays

    found: dict[str, Callable[[], lib.Section]] = {
        "slack": lambda: bench_slack.run(tiny=tiny),
        "tick": lambda: bench_tick.run(tiny=tiny, pg=pg),
        "digest": lambda: bench_digest.run(tiny=tiny, pg=pg),
        "workdays": lambda: bench_workdays.run(tiny=tiny),
        "outbox": lambda: bench_outbox.run(tiny=tiny, pg=pg),
        "memory": lambda: bench_memory.run(tiny=tiny),
    }
    if teams_ready() is None:
        import bench_teams

        found["teams"] = lambda: bench_teams.run(tiny=tiny)
    return found


def skipped(name: str, why: str) -> lib.Section:
    """A section saying a benchmark was not run, and why."""
    number, title = TITLES[name]
    return lib.Section(number, title, f"**{why}**", ["result"], rows=[["not run"]])


def failed(name: str, error: str) -> lib.Section:
    """A section saying a benchmark failed, with the end of its error."""
    number, title = TITLES[name]
    section = lib.Section(number, title, "**This benchmark failed in this run.**", ["result"])
    section.rows.append(["failed"])
    section.notes.append("```\n" + error[-3000:] + "\n```")
    return section


def render(
    sections: Sequence[lib.Section], machine: Sequence[tuple[str, str]], *, tiny: bool
) -> str:
    """BENCHMARKS.md."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand. Each figure is a ratio "
        "to a baseline measured in the same run, because the machine is shared and its speed "
        "varies from minute to minute; the absolute numbers are beside each ratio. Every "
        "benchmark also runs once at a tiny size in `make test` "
        "(`tests/*/test_bench_*.py`), so none of them can rot.",
        "",
    ]
    if tiny:
        lines += ["**A tiny run, for testing the benchmarks: these figures mean nothing.**", ""]
    lines += ["## The machine", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in machine]
    lines += ["", "## Targets", "", "| benchmark | target | result | detail |", "|---|---|---|---|"]
    for section in sorted(sections, key=lambda s: s.number):
        for verdict in section.verdicts:
            lines.append(
                f"| {section.number}. {section.title} | {verdict.target} | {verdict.mark} | "
                f"{verdict.detail} |"
            )
        if not section.verdicts and section.rows in ([["not run"]], [["failed"]]):
            lines.append(
                f"| {section.number}. {section.title} | | {section.rows[0][0]} | "
                f"{section.intro.strip('*')} |"
            )
        elif not section.verdicts:
            lines.append(
                f"| {section.number}. {section.title} | none set in issue 8 | measured | "
                f"{section.headline} |"
            )
    lines.append("")
    total = sum(section.seconds for section in sections)
    lines += [section.markdown() for section in sorted(sections, key=lambda s: s.number)]
    lines.append(f"The whole run took {total / 60:.1f} minutes.\n")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks asked for (all by default) and write the file; 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a check, not figures")
    parser.add_argument("--only", action="append", choices=NAMES, help="this benchmark only")
    parser.add_argument(
        "--output", type=Path, default=lib.ROOT / "BENCHMARKS.md", help="where to write"
    )
    args = parser.parse_args(argv)
    lib.clear_proxies()
    machine = lib.machine()
    wanted = args.only or list(NAMES)
    sections: list[lib.Section] = []
    ok = True
    with ExitStack() as stack:
        needs_pg = any(name in wanted for name in ("tick", "digest", "outbox"))
        pg = stack.enter_context(lib.postgres()) if needs_pg else None
        runnable = benchmarks(args.tiny, pg)
        for name in wanted:
            if name not in runnable:
                why = teams_ready() or "not available"
                print(f"[bench] {name}: {why}", file=sys.stderr, flush=True)
                sections.append(skipped(name, why))
                continue
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            started = timer.perf_counter()
            try:
                section = runnable[name]()
            except Exception:
                ok = False
                section = failed(name, traceback.format_exc())
                section.seconds = timer.perf_counter() - started
            print(f"[bench] {name}: {section.seconds:.0f} s", file=sys.stderr, flush=True)
            sections.append(section)
    args.output.write_text(render(sections, machine, tiny=args.tiny))
    print(f"[bench] wrote {args.output}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
