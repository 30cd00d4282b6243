"""Benchmark: peak resident memory of a `serve`-like process with 100,000 disputes.

A child process does what `escalation-bot serve` does at start and on each tick: build_core,
build_server with Slack (against the fake Slack API) and the tick, make_web_app, then a few
ticks (timers, then the outbox) and a `/escalate status` query; then it reports its peak
resident set size (VmHWM; see `peak_kib` for why not getrusage's ru_maxrss). Once before the
digest time, and once after it, where the first tick builds and sends the day's digest. The
baseline is the same process on a database holding only what the ticks work on (the 100 due
disputes and the two they were copied from), in the same run.

Run: .venv/bin/python bench/bench_memory.py [--tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time as timer
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bench_slack
import benchlib as lib
from bench_slack import SECRET, TOKEN, slack_config
from latency import Child

BEFORE_DIGEST = datetime(2026, 11, 30, 9, 10, tzinfo=UTC)
AFTER_DIGEST = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
LATER = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


# ---- the serve-like child ------------------------------------------------------------------


async def serve_like(url: str, config: str, slack_url: str, at: str, ticks: int) -> dict[str, Any]:
    """Build what `serve` builds, tick `ticks` times at `at`, ask for a status; peak RSS."""
    from sqlalchemy import select

    from bot.app import build_core
    from bot.clock import FakeClock
    from bot.config import Settings
    from bot.messages import Message
    from bot.web import build_server, make_web_app
    from store.models import OutboxRow

    settings = Settings(
        database_url=url,
        escalation_config=config,
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
        slack_api_url=slack_url,
    )
    clock = FakeClock(datetime.fromisoformat(at))
    core = build_core(settings, clock=clock, migrate=False)
    server = build_server(core)
    make_web_app(server)
    assert server.timekeeper is not None
    fired = sent = digests = 0
    for _ in range(ticks):
        beat = await server.timekeeper.beat()
        fired += beat.timers.fired
        sent += beat.outbox.sent
        digests += beat.timers.digest
        clock.advance(timedelta(seconds=settings.tick_seconds))
    amara = core.service.directory.get("amara.okafor")
    reply = core.conversations.command("escalate status DUE-2026-1", amara)
    assert reply is not None and reply.ok, reply
    await server.settle()
    peak_mib = peak_kib() / 1024  # before the look at the outbox below, which is not serve's
    with core.store.unit() as session:
        listed = [
            len(Message.from_data(payload).facts)
            for payload in session.execute(
                select(OutboxRow.payload).where(OutboxRow.kind == "digest")
            ).scalars()
        ]
    core.store.dispose()
    return {
        "peak_mib": peak_mib,
        "fired": fired,
        "sent": sent,
        "digests": digests,
        "listed": max(listed, default=0),
    }


def peak_kib() -> int:
    """This process's peak resident set size, in KiB.

    VmHWM, the high-water mark of this process's own memory, where /proc has it. Not
    getrusage's ru_maxrss: Linux carries into it the parent's peak from before the fork and
    exec that started this process, so every child of a big parent would report the parent's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# ---- the parent ------------------------------------------------------------------------------


def build_database(url: str, idle: int, due: int) -> None:
    """Two real disputes, `due` copies due on the morning of 30 Nov, `idle` copies not due."""
    from sqlalchemy import text

    from bot.clock import FakeClock

    clock = FakeClock(BEFORE_DIGEST)
    core = lib.make_core(url, clock)
    try:
        due_template = lib.open_template(core, clock, lib.OPENED)
        idle_template = lib.open_template(core, clock, LATER)
        with core.store.unit() as session:
            session.execute(text("UPDATE disputes SET wake_at = NULL"))
            session.execute(text("DELETE FROM outbox"))
        lib.copy_dispute(core.store, idle_template, "IDLE-2027-", idle, wake_at=lib.FAR_FUTURE)
        reset_due(url, due, due_template)
    finally:
        core.store.dispose()


def reset_due(url: str, due: int, template: str | None = None) -> None:
    """The due disputes as they were before any tick fired their reminders."""
    from store.repository import Store

    store = Store(url)
    try:
        if template is None:
            from sqlalchemy import text

            with store.unit() as session:
                # The first dispute opened is the one the due disputes are copies of.
                template = session.execute(
                    text("SELECT ref FROM disputes ORDER BY id LIMIT 1")
                ).scalar_one()
        lib.delete_disputes(store, "DUE-2026-")
        lib.copy_dispute(
            store,
            template,
            "DUE-2026-",
            due,
            wake_at=BEFORE_DIGEST - timedelta(minutes=1),
            participants=True,
        )
    finally:
        store.dispose()


def child(
    url: str, config: Path, slack_url: str, at: datetime, ticks: int, log: Path
) -> dict[str, Any]:
    """Run the serve-like child to the end; what it reported."""
    with log.open("a") as errors:
        done = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve-like",
                url,
                str(config),
                slack_url,
                at.isoformat(),
                str(ticks),
            ],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=lib.child_env(),
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the serve-like process failed:\n{log.read_text()[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def run(*, tiny: bool = False) -> lib.Section:
    """The serve-like process on a small and a large SQLite database, before and after 09:30."""
    started = timer.perf_counter()
    lib.clear_proxies()
    due, large, ticks = (5, 60, 2) if tiny else (100, 100_000, 3)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with lib.scratch("bench-memory-") as tmp:
        config = slack_config(tmp)
        urls = {
            "baseline": f"sqlite:///{tmp}/small.db",
            "large": f"sqlite:///{tmp}/large.db",
        }
        build_database(urls["baseline"], 0, due)
        build_database(urls["large"], large - due - 2, due)
        slack = Child(["--fake-slack", "0"], tmp / "fake-slack.log", bench_slack.HERE)
        try:
            slack_url = slack.ready["url"]
            # After the digest time the first tick builds and sends the day's digest; the
            # later ones find it sent.
            for moment, label, count in (
                (BEFORE_DIGEST, "before", ticks),
                (AFTER_DIGEST, "after", ticks),
            ):
                for size, url in urls.items():
                    reset_due(url, due)
                    results[(size, label)] = child(
                        url, config, slack_url, moment, count, tmp / "serve.log"
                    )
        finally:
            slack.stop()

    section = lib.Section(
        7,
        "Memory",
        "Peak resident memory (VmHWM) of a process doing what `serve` does: build_core, "
        "build_server with Slack and the tick, make_web_app, then ticks (timers and outbox, "
        f"{due} disputes due) and an `/escalate status` query, on SQLite: one process before "
        "the digest time, one after it, where its first tick builds and sends the day's "
        f"digest. Baseline: the same process with only those {due} disputes (and the two they "
        "were copied from) in the database, in the same run.",
        ["moment", "open disputes", "peak RSS", "baseline peak RSS", "ratio", "ticks"],
    )
    for label, when in (
        ("before", f"{BEFORE_DIGEST:%H:%M} (before the digest time)"),
        ("after", f"{AFTER_DIGEST:%H:%M} (after it: the day's digest, then the later ticks)"),
    ):
        big, base = results[("large", label)], results[("baseline", label)]
        section.rows.append(
            [
                when,
                f"{large:,}",
                f"{big['peak_mib']:,.0f} MiB",
                f"{base['peak_mib']:,.0f} MiB",
                lib.ratio(big["peak_mib"], base["peak_mib"]),
                str(ticks),
            ]
        )
        section.data[f"{label}.peak_mib"] = big["peak_mib"]
        section.data[f"{label}.baseline_mib"] = base["peak_mib"]
        section.data[f"{label}.fired"] = big["fired"]
        section.data[f"{label}.digests"] = big["digests"]
        section.data[f"{label}.listed"] = big["listed"]
    for (size, label), report in results.items():
        if report["fired"] < due or report["sent"] == 0:
            raise RuntimeError(f"the {size} process's ticks did no work: {report}")
        if report["digests"] != (1 if label == "after" else 0):
            raise RuntimeError(f"the {size} process {label} the digest time: {report}")

    def more(label: str) -> str:
        """What the large database added to the peak, in words."""
        big = results[("large", label)]["peak_mib"]
        base = results[("baseline", label)]["peak_mib"]
        if big - base < 1:
            return f"nothing measurable ({big:,.0f} MiB against {base:,.0f} MiB)"
        return f"{big - base:,.0f} MiB ({big:,.0f} MiB against {base:,.0f} MiB)"

    listed = results[("large", "after")]["listed"]
    section.notes.append(
        f"Before the digest time the tick reads only what is due: {large:,} disputes in the "
        f"database add {more('before')} to the peak. After it, the first tick builds the "
        f"day's digest from the disputes due within a working day ({listed:,} listed) and a "
        f"`COUNT(*)` of the other open disputes (benchmark 4), and the later ticks find it "
        f"sent and build nothing: {large:,} disputes add {more('after')}."
    )
    section.notes.append(
        "Measured as VmHWM in /proc/self/status, not getrusage's ru_maxrss: Linux carries a "
        "parent's peak into a child across fork and exec, so each child of the benchmark "
        "runner would have reported the runner's peak instead of its own."
    )
    big_before, big_after = results[("large", "before")], results[("large", "after")]
    base_before, base_after = results[("baseline", "before")], results[("baseline", "after")]
    section.headline = (
        f"{big_before['peak_mib']:,.0f} MiB with {large:,} disputes before the digest time "
        f"({lib.ratio(big_before['peak_mib'], base_before['peak_mib'])} the baseline), "
        f"{big_after['peak_mib']:,.0f} MiB after it, sending the digest "
        f"({lib.ratio(big_after['peak_mib'], base_after['peak_mib'])})"
    )
    section.seconds = timer.perf_counter() - started
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Print the section as markdown, or be the serve-like child."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--serve-like", nargs=5, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_like:
        url, config, slack_url, at, ticks = args.serve_like
        report = asyncio.run(serve_like(url, config, slack_url, at, int(ticks)))
        print(json.dumps(report), flush=True)
    else:
        print(run(tiny=args.tiny).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
