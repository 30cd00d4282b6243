"""What the Slack and Teams latency benchmarks share: child processes, the load, the tables.

Both time requests into the bot as `serve` runs it and into a bare baseline app on the same
machine. The two are measured interleaved (one request to each in turn, sequentially; a round
of concurrent requests to each in turn), so that the machine's slow moments, which on a shared
machine come and go within seconds, fall on both alike.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import time as timer
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import benchlib as lib

CONCURRENT = 20


async def until_stdin_closes() -> None:
    """Wait until the parent closes our stdin (how a child process is told to stop)."""
    # A thread of its own: one of the default executor's would be taken from the bot's work.
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=wait, daemon=True).start()
    await closed.wait()


class Child:
    """A child process that says one JSON line on stdout once it is ready."""

    def __init__(self, args: list[str], log: Path, script: Path) -> None:
        self.args = args
        self.log_path = log
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=lib.child_env(),
        )
        self._ready: dict[str, Any] | None = None

    @property
    def ready(self) -> dict[str, Any]:
        """What the child said when it was ready (waiting for it the first time)."""
        if self._ready is None:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if not line:
                self.stop()
                raise RuntimeError(
                    f"{self.args[0]} did not start:\n{self.log_path.read_text()[-2000:]}"
                )
            self._ready = json.loads(line)
        return self._ready

    def stop(self) -> dict[str, Any]:
        """Close stdin (the child stops), and read what it says on the way out."""
        said: dict[str, Any] = {}
        try:
            out, _ = self.process.communicate(input="", timeout=30)
            lines = [x for x in out.splitlines() if x.strip()]
            said = json.loads(lines[-1]) if lines else {}
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        return said


@dataclass
class Request:
    """One request: its body, its headers (made when sent: signatures and tokens expire), and
    the key by which the fake API recognises the work it causes (a trigger id, a message)."""

    body: bytes
    headers: Callable[[], dict[str, str]]
    key: str = ""


@dataclass
class Run:
    """One kind of request, one mode, one app: each request's latency, and when it was sent."""

    latencies: list[float] = field(default_factory=list)
    sent: dict[str, float] = field(default_factory=dict)  # key -> time.monotonic() when sent
    wall: float = 0.0
    failures: int = 0

    @property
    def p50(self) -> float:
        return lib.percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return lib.percentile(self.latencies, 99)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def add(self, other: Run) -> None:
        """Take in another round's samples."""
        self.latencies += other.latencies
        self.sent.update(other.sent)
        self.wall += other.wall
        self.failures += other.failures

    def done(self, arrivals: dict[str, float]) -> list[float]:
        """From sending each request to the fake API receiving the work it caused."""
        return [arrivals[k] - t for k, t in self.sent.items() if k in arrivals]


async def load(
    session: Any,
    url: str,
    batch: list[Request],
    clients: int,
    expect: bytes = b"",
    statuses: tuple[int, ...] = (200,),
) -> Run:
    """Send the batch from `clients` concurrent clients, each request after its last answer.

    `session` is an aiohttp ClientSession (its connections are kept between batches, as
    Slack's and Microsoft's are). A failure is an answer with a status not in `statuses`, or
    without `expect` in its body.
    """
    queue = list(reversed(batch))
    run = Run()

    async def client() -> None:
        while queue:
            request = queue.pop()
            headers = request.headers()
            if request.key:
                run.sent[request.key] = timer.monotonic()
            started = timer.perf_counter()
            async with session.post(url, data=request.body, headers=headers) as response:
                answer = await response.read()
                status = response.status
            run.latencies.append(timer.perf_counter() - started)
            run.failures += status not in statuses or expect not in answer

    started = timer.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    run.wall = timer.perf_counter() - started
    return run


def session(clients: int = CONCURRENT) -> Any:
    """An aiohttp client session for one app, with room for `clients` connections."""
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients), trust_env=False)


def turns(count: int) -> Iterator[tuple[str, str]]:
    """Which app goes first in each of `count` turns: each in turn, so neither always leads."""
    for i in range(count):
        yield ("bare", "full") if i % 2 == 0 else ("full", "bare")


async def interleaved(
    sessions: dict[str, Any],
    urls: dict[str, str],
    batch: Callable[[str, int], list[Request]],
    *,
    rounds: int,
    size: int,
    clients: int,
    expect: Callable[[str], bytes] = lambda app: b"",
    statuses: tuple[int, ...] = (200,),
    settle: Callable[[str], Awaitable[None]] | None = None,
    linger: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Run]:
    """`rounds` rounds of `size` requests from `clients` clients, to each app in turn.

    `settle(app)`, if given, waits after each round until the work that round caused (a modal
    opened, a message updated) has been done: each round is people arriving at once, not a
    queue of work piling up behind answers given early. `linger()`, if given, then waits for
    the bot's work that goes on after that (a click's notices, sent by the outbox).
    """
    runs = {app: Run() for app in ("bare", "full")}
    for first, second in turns(rounds):
        for app in (first, second):
            got = await load(
                sessions[app], urls[app], batch(app, size), clients, expect(app), statuses
            )
            runs[app].add(got)
            if settle is not None:
                await settle(app)
            if linger is not None and app == "full":
                await linger()
    return runs


Results = dict[tuple[str, str, str], Run]  # (kind, mode, app) -> run


async def measure(
    urls: dict[str, str],
    batcher: Callable[[str], Callable[[str, int], list[Request]]],
    kinds: dict[str, str],
    *,
    everyone: int,
    warm: int,
    sequential: int,
    rounds: int,
    clients: int,
    expect: Callable[[str], Callable[[str], bytes]] = lambda kind: lambda app: b"",
    statuses: tuple[int, ...] = (200,),
    settle: Callable[[str], Awaitable[None]] | None = None,
    calls: Callable[[], Awaitable[int]] | None = None,
    calm: float = 0.16,
    lingering: tuple[str, ...] = ("button",),
) -> Results:
    """Warm both apps up (a `help` from each of `everyone` people, `warm` of each kind), then
    time each kind sequentially and in concurrent rounds, the two apps in turn.

    `batcher(kind)(app, count)` makes the requests; `settle(app)`, if given, waits for the
    work each round caused (see `interleaved`). `calls()`, if given, counts the calls the fake
    API has had: before each kind and mode the run waits until it has heard nothing for
    `calm` seconds, and after each round of a `lingering` kind for an eighth of that. The
    messages the outbox sends after a click (to the other party, the channel) are work of
    their own: left over, they would be timed as the next request's latency.
    """
    results: Results = {}
    async with session(clients) as bare, session(clients) as full:
        sessions = {"bare": bare, "full": full}
        # Caches warm, signing keys fetched, everyone's platform id learnt (a database write
        # the first time a person is seen): none of that is measured.
        for app in ("bare", "full"):
            await load(sessions[app], urls[app], batcher("help")(app, everyone), 1, b"", statuses)
            # Every client's connection opened, as the platforms keep theirs open.
            await load(
                sessions[app], urls[app], batcher("help")(app, clients), clients, b"", statuses
            )
            for kind in kinds:
                await load(sessions[app], urls[app], batcher(kind)(app, warm), 1, b"", statuses)
        if settle is not None:
            await settle("full")
        # This process stands in for Slack or Microsoft: its own garbage collections (a full
        # one stops it for tens of milliseconds) would be timed as the apps' latency, a whole
        # round's requests at once. It measures without them, as timeit does.
        gc.collect()
        gc.disable()
        try:
            for kind in kinds:
                for mode, count, size, width in (
                    ("sequential", sequential, 1, 1),
                    (f"{clients} concurrent", rounds, clients, clients),
                ):
                    if calls is not None:
                        await quiet_for(calls, calm=calm)
                    runs = await interleaved(
                        sessions,
                        urls,
                        batcher(kind),
                        rounds=count,
                        size=size,
                        clients=width,
                        expect=expect(kind),
                        statuses=statuses,
                        settle=settle,
                        linger=(
                            partial(quiet_for, calls, calm=calm / 8)
                            if calls is not None and kind in lingering
                            else None
                        ),
                    )
                    for app, r in runs.items():
                        results[(kind, mode, app)] = r
        finally:
            gc.enable()
    return results


def seed(database_url: str, count: int) -> list[str]:
    """The bot's database, with `count` open disputes for Ben to acknowledge; their refs."""
    from bot.clock import FakeClock

    clock = FakeClock(datetime.now(UTC))
    core = lib.make_core(database_url, clock)
    try:
        template = lib.open_template(core, clock, clock.now())
        lib.copy_dispute(core.store, template, "ACK-2026-", count, wake_at=lib.FAR_FUTURE)
    finally:
        core.store.dispose()
    return [f"ACK-2026-{i}" for i in range(1, count + 1)]


def table(
    section: lib.Section,
    results: Results,
    kinds: dict[str, str],
    done: dict[str, dict[str, float]] | None = None,
    bare_done: dict[str, dict[str, float]] | None = None,
) -> None:
    """The bot's rows against the bare app's, and the section's data for BENCHMARKS.md.

    `done` maps a kind to the fake API's arrival times (by request key) of the work it caused:
    where given, the p99 from sending the request to that work reaching the API is shown too.
    `bare_done` does the same for the bare app's work, where it does some after its answer.
    """
    for (kind, mode, app), r in results.items():
        if app != "full":
            continue
        bare = results[(kind, mode, "bare")]
        finished = r.done(done[kind]) if done and kind in done else []
        bare_finished = bare.done(bare_done[kind]) if bare_done and kind in bare_done else []
        row = [
            kinds[kind],
            mode,
            lib.ms(r.p50),
            lib.ms(r.p99),
            lib.ms(bare.p50),
            lib.ms(bare.p99),
            lib.ratio(r.p99, bare.p99),
        ]
        if done is not None:
            row.append(lib.ms(lib.percentile(finished, 99)) if finished else "-")
        if bare_done is not None:
            row.append(lib.ms(lib.percentile(bare_finished, 99)) if bare_finished else "-")
            both = finished and bare_finished
            row.append(
                lib.ratio(lib.percentile(finished, 99), lib.percentile(bare_finished, 99))
                if both
                else "-"
            )
        section.rows.append([*row, f"{r.rate:,.0f}"])
        key = f"{kind}.{mode.split()[0]}"
        section.data.update({f"{key}.p50": r.p50, f"{key}.p99": r.p99, f"{key}.bare_p99": bare.p99})
        if finished:
            section.data[f"{key}.done_p99"] = lib.percentile(finished, 99)
        if bare_finished:
            section.data[f"{key}.bare_done_p99"] = lib.percentile(bare_finished, 99)


def headings(first: str, rate: str, *, done: bool, bare_done: bool = False) -> list[str]:
    """The table's columns: what is sent, the clients, the figures (`table` fills them)."""
    figures = ["bot p50", "bot p99", "bare p50", "bare p99", "p99 ratio"]
    work = ["work done p99"] if done else []
    if bare_done:
        work += ["bare work done p99", "work done ratio"]
    return [first, "clients", *figures, *work, rate]


def verdicts(
    section: lib.Section, results: Results, kinds: dict[str, str], clients: int, bare: str
) -> None:
    """Issue 8's two targets for each kind: p99 within 1.5x the bare app, and under 100 ms."""
    for kind, label in kinds.items():
        pairs = [
            (mode, results[(k, mode, "full")], results[(k, mode, "bare")])
            for (k, mode, app) in results
            if k == kind and app == "full"
        ]
        worst = max(pairs, key=lambda p: p[1].p99 / p[2].p99)
        section.verdicts.append(
            lib.Verdict(
                f"{label}: p99 within 1.5x the {bare}",
                all(full.p99 <= 1.5 * base.p99 for _, full, base in pairs),
                f"Worst {worst[1].p99 / worst[2].p99:.2f}x ({worst[0]}: {lib.ms(worst[1].p99)} "
                f"against {lib.ms(worst[2].p99)}).",
            )
        )
        concurrent = results[(kind, f"{clients} concurrent", "full")]
        base = results[(kind, f"{clients} concurrent", "bare")]
        section.verdicts.append(
            lib.Verdict(
                f"{label}: p99 under 100 ms with {clients} concurrent clients",
                concurrent.p99 < 0.1,
                f"{lib.ms(concurrent.p99)} (the {bare}: {lib.ms(base.p99)}).",
            )
        )


async def quiet_for(
    count: Callable[[], Awaitable[int]], *, calm: float = 0.25, bound: float = 15.0
) -> None:
    """Wait until `count()` (the calls a fake API has had) stays the same for `calm` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + bound
    last, since = await count(), loop.time()
    while loop.time() - since < calm:
        if loop.time() > end:
            raise RuntimeError(f"the bot was still calling the fake API after {bound:.0f} s")
        await asyncio.sleep(min(0.02, calm / 4))
        now = await count()
        if now != last:
            last, since = now, loop.time()
