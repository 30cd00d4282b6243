"""Benchmark: how fast Slack gets its answer, from the whole bot and from a bare Bolt app.

Three processes besides this one, each on 127.0.0.1: the fake Slack Web API
(tests/fakes/slack_api.py, with the workspace's people), the bot as `serve` builds it
(`build_server` and `make_web_app`, on SQLite), and the baseline: the same aiohttp server with
a bare Bolt AsyncApp (process_before_response=True) that only acknowledges. This process
signs requests as Slack does and times each one from sending to the last byte of the answer.

Requests: `/escalate help` (answered in the ack), `/escalate` (opens the intake modal: the bot
calls views.open before it answers) and the Acknowledge button on a dispute (a database write,
then chat.update on the message clicked), each sequentially and from 20 concurrent clients.

Run: .venv/bin/python bench/bench_slack.py [--tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import threading
import time as timer
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as lib

TOKEN = "xoxb-bench"
SECRET = "bench-signing-secret"
BEN = "U0BEN"


def people() -> dict[str, tuple[str, str]]:
    """Everyone in the example directory as a Slack user: id -> (email, name). Ben is U0BEN."""
    import yaml

    listed = yaml.safe_load((lib.EXAMPLE_CONFIG.parent / "directory.yaml").read_text())["people"]
    return {
        BEN if p["id"] == "ben.carter" else "U0" + p["id"].replace(".", "").upper(): (
            p["email"],
            p["name"],
        )
        for p in listed
        if p.get("email")
    }


KINDS = {
    "help": "`/escalate help`",
    "modal": "`/escalate` (opens the modal)",
    "button": "Acknowledge button",
}
CONCURRENT = 20


# ---- child processes -----------------------------------------------------------------------


async def _until_stdin_closes() -> None:
    # A thread of its own: one of the default executor's would be taken from the bot's work.
    loop = asyncio.get_running_loop()
    closed = asyncio.Event()

    def wait() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(closed.set)

    threading.Thread(target=wait, daemon=True).start()
    await closed.wait()


async def fake_slack(messages: int) -> None:
    """The fake Slack API with the workspace's people and `messages` DMs to Ben to click on."""
    from fakes.slack_api import FakeSlackApi

    async with FakeSlackApi(token=TOKEN) as api:
        for user_id, (email, name) in people().items():
            api.add_user(user_id, email, name)
        ts = [
            api._m_chat_postMessage({"channel": "D" + BEN, "text": "Please acknowledge"})["ts"]
            for _ in range(messages)
        ]
        print(json.dumps({"url": api.base_url, "ts": ts}), flush=True)
        await _until_stdin_closes()
        calls: dict[str, int] = {}
        for method, _ in api.calls:
            calls[method] = calls.get(method, 0) + 1
        print(json.dumps({"violations": len(api.violations), "calls": calls}), flush=True)


def bare_app(slack_url: str) -> Any:
    """The baseline: the same aiohttp route around a Bolt app that only acknowledges."""
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt = AsyncApp(
        client=AsyncWebClient(token=TOKEN, base_url=slack_url),
        signing_secret=SECRET,
        process_before_response=True,
    )

    async def ack_only(ack: Any) -> None:
        await ack()

    bolt.command("/escalate")(ack_only)
    bolt.action(re.compile(".*"))(ack_only)

    async def slack_events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", slack_events)
    return app


async def serve(kind: str, database_url: str, config: str, slack_url: str) -> None:
    """Serve the bot (`full`) or the bare app on a free port until stdin closes."""
    from aiohttp import web

    core = None
    if kind in ("full", "quiet"):
        from bot import logs
        from bot.app import build_core
        from bot.config import Settings
        from bot.web import build_server, make_web_app

        settings = Settings(
            database_url=database_url,
            escalation_config=config,
            slack_bot_token=TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=slack_url,
            # The most the settings allow: no one person is slowed during the benchmark.
            command_rate_per_minute=600,
            command_burst=600,
        )
        logs.configure(settings.log_level, "json")  # as `serve` does: a JSON line per request
        core = build_core(settings, migrate=False)
        server = build_server(core, tick=False)
        if kind == "quiet":
            # A diagnostic: the same bot, except that an action does not wake the outbox at
            # once (its messages would wait for the tick). The difference is what sending
            # right away costs the person who clicked.
            server.dispatcher = None
        app = make_web_app(server)
    else:
        app = bare_app(slack_url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await _until_stdin_closes()
    await runner.cleanup()
    if core is not None:
        core.store.dispose()


class Child:
    """A child process that says one JSON line on stdout once it is ready."""

    def __init__(self, args: list[str], log: Path, script: Path | None = None) -> None:
        self.args = args
        self.log_path = log
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(script or Path(__file__).resolve()), *args],
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


# ---- the load --------------------------------------------------------------------------------


Request = tuple[bytes, Callable[[], dict[str, str]]]


def requests(
    kind: str, count: int, start: int, refs: list[str], ts: list[str], users: list[str]
) -> list[Request]:
    """`count` requests of one kind, numbered from `start` (each trigger id used once)."""
    from fakes.slack_signing import block_actions_body, block_actions_payload, signed_headers
    from fakes.slack_signing import slash_command_body as command

    from bot.adapters.slack.blocks import message_blocks
    from bot.messages import ActionId, Button, Message, Recipient

    out: list[Request] = []
    for i in range(start, start + count):
        # Commands come from everyone in turn, as in a partnership: the bot slows one person
        # who sends many, which is not what is measured here.
        user = users[i % len(users)]
        if kind == "help":
            body = command(text="help", user_id=user, trigger_id=f"bench.help.{i}")
        elif kind == "modal":
            body = command(text="", user_id=user, trigger_id=f"bench.modal.{i}")
        else:
            ref = refs[i]
            shown = Message(
                Recipient.person("ben.carter"),
                f"New disagreement {ref}: please acknowledge it.",
                buttons=[Button(ActionId.ACKNOWLEDGE, ref, "primary")],
                ref=ref,
            )
            blocks = [b.to_dict() for b in message_blocks(shown)]
            message = {"type": "message", "ts": ts[i], "text": shown.text, "blocks": blocks}
            body = block_actions_body(
                block_actions_payload(
                    "acknowledge",
                    ref,
                    user_id=BEN,
                    channel_id="D" + BEN,
                    message_ts=ts[i],
                    message=message,
                    trigger_id=f"bench.button.{i}",
                )
            )
        # Signed when sent: Bolt refuses a timestamp five minutes old.
        out.append((body, lambda body=body: signed_headers(SECRET, body)))  # type: ignore[misc]
    return out


async def load(
    url: str,
    batch: list[Request],
    clients: int,
    expect: bytes = b"",
    statuses: tuple[int, ...] = (200,),
) -> tuple[list[float], float, int]:
    """Send the batch from `clients` concurrent clients: latencies, wall time, failures.

    A failure is an answer with a status not in `statuses`, or without `expect` in its body.
    """
    import aiohttp

    queue = list(reversed(batch))
    latencies: list[float] = []
    failures = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while queue:
            body, headers = queue.pop()
            sent = headers()
            started = timer.perf_counter()
            async with session.post(url, data=body, headers=sent) as response:
                answer = await response.read()
                status = response.status
            latencies.append(timer.perf_counter() - started)
            failures += status not in statuses or expect not in answer

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        started = timer.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = timer.perf_counter() - started
    return latencies, wall, failures


@dataclass
class Run:
    """One kind of request, one mode, one app."""

    latencies: list[float] = field(default_factory=list)
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


def slack_config(tmp: Path) -> Path:
    """The example partnership with Slack channel ids, as the Slack tests set it up."""
    shutil.copytree(lib.EXAMPLE_CONFIG.parent, tmp / "cfg")
    config = tmp / "cfg" / "partnership.yaml"
    config.write_text(
        config.read_text()
        .replace("disputes: {slack: null", "disputes: {slack: C0DISPUTES")
        .replace("oversight: {slack: null", "oversight: {slack: C0OVERSIGHT")
    )
    return config


def run(*, tiny: bool = False) -> lib.Section:
    """Start the fake Slack, the bot and the bare app; time every kind and mode against both."""
    begun = timer.perf_counter()
    lib.clear_proxies()
    # 100 of each: a p99 from 100 samples is their second slowest; more would take the
    # benchmark past its minute on this machine (the bot acknowledges ~10 clicks a second).
    warm, sequential, per_client = (3, 10, 3) if tiny else (20, 100, 5)
    clients = 2 if tiny else CONCURRENT
    # Each click, on either app, takes a dispute of its own and a message of its own.
    clicks = 2 * (warm + sequential + clients * per_client) + warm + sequential
    results: dict[tuple[str, str, str], Run] = {}
    with lib.scratch("bench-slack-") as tmp:
        database = f"sqlite:///{tmp}/bot.db"
        config = slack_config(tmp)
        refs = seed(database, clicks)
        # Everyone in the directory sends commands; in tiny mode a few, to keep it quick.
        users = sorted(people())[: 4 if tiny else None]
        slack = Child(["--fake-slack", str(clicks)], tmp / "fake-slack.log")
        servers: dict[str, Child] = {}
        try:
            url, ts = slack.ready["url"], slack.ready["ts"]
            # Started together, waited for below. The diagnostic server is left out when tiny.
            for app in ("bare", "full") if tiny else ("bare", "full", "quiet"):
                servers[app] = Child(
                    ["--serve", app, database, str(config), url], tmp / f"{app}.log"
                )
            urls = {
                app: f"http://127.0.0.1:{child.ready['port']}/slack/events"
                for app, child in servers.items()
            }
            used = {kind: 0 for kind in KINDS}
            to_bot = {kind: 0 for kind in KINDS}

            def batch(kind: str, count: int, app: str) -> list[Request]:
                made = requests(kind, count, used[kind], refs, ts, users)
                used[kind] += count
                to_bot[kind] += count if app != "bare" else 0
                return made

            async def measure() -> None:
                # Bolt's auth.test, everyone's Slack id learnt (a database write each, the first
                # time a person is seen), caches warm: none of that is measured.
                everyone = len(users)
                for app in ("bare", "full"):
                    await load(urls[app], batch("help", everyone, app), 1)
                    for kind in KINDS:
                        await load(urls[app], batch(kind, warm, app), 1)
                for kind in KINDS:
                    for mode, count, width in (
                        ("sequential", sequential, 1),
                        (f"{clients} concurrent", clients * per_client, clients),
                    ):
                        for app in ("bare", "full"):
                            expect = b"escalate list" if kind == "help" and app == "full" else b""
                            latencies, wall, failures = await load(
                                urls[app], batch(kind, count, app), width, expect
                            )
                            results[(kind, mode, app)] = Run(latencies, wall, failures)
                if "quiet" in urls:
                    await load(urls["quiet"], batch("button", warm, "quiet"), 1)
                    latencies, wall, failures = await load(
                        urls["quiet"], batch("button", sequential, "quiet"), 1
                    )
                    results[("button", "sequential", "quiet")] = Run(latencies, wall, failures)

            asyncio.run(measure())
            # Let the bot's background sends (kicked by each acknowledgement) finish quietly.
            timer.sleep(0.5)
        finally:
            for child in servers.values():
                child.stop()
            said = slack.stop()
        full_log = (tmp / "full.log").read_text()
    failed = sum(r.failures for r in results.values())
    if failed:
        raise RuntimeError(
            f"{failed} requests were not answered 200; the bot's log ends:\n{full_log[-3000:]}"
        )
    # Each request did its work: a modal opened for each /escalate, each click updated its message.
    calls = said.get("calls", {})
    if (
        calls.get("views.open", 0) != to_bot["modal"]
        or calls.get("chat.update", 0) < to_bot["button"]
    ):
        raise RuntimeError(
            f"the bot did not do the work asked of it: {to_bot} requests, Slack saw {calls}; "
            f"the bot's log ends:\n{full_log[-3000:]}"
        )
    problems = [line for line in full_log.splitlines() if '"level": "info"' not in line]

    section = lib.Section(
        1,
        "Slack acknowledgement latency",
        "Signed requests into the bot as `serve` runs it (aiohttp, Bolt with "
        "process_before_response=True, SQLite) and into the baseline, the same aiohttp server "
        "with a bare Bolt AsyncApp that only acknowledges, both against the fake Slack Web API. "
        f"Each latency is from sending the request to the last byte of the answer. Sequential: "
        f"{sequential} requests one after another; concurrent: {clients} clients sending "
        f"{per_client} each, back to back. All four processes share the machine's CPUs.",
        [
            "request",
            "clients",
            "bot p50",
            "bot p99",
            "bare p50",
            "bare p99",
            "p99 ratio",
            "bot req/s",
        ],
    )
    for (kind, mode, app), r in results.items():
        if app != "full":
            continue
        bare = results[(kind, mode, "bare")]
        section.rows.append(
            [
                KINDS[kind],
                mode,
                lib.ms(r.p50),
                lib.ms(r.p99),
                lib.ms(bare.p50),
                lib.ms(bare.p99),
                lib.ratio(r.p99, bare.p99),
                f"{r.rate:,.0f}",
            ]
        )
        key = f"{kind}.{mode.split()[0]}"
        section.data.update({f"{key}.p50": r.p50, f"{key}.p99": r.p99, f"{key}.bare_p99": bare.p99})
    if ("button", "sequential", "quiet") in results:
        quiet = results[("button", "sequential", "quiet")]
        bare = results[("button", "sequential", "bare")]
        section.rows.append(
            [
                "Acknowledge button, outbox not woken (diagnostic)",
                "sequential",
                lib.ms(quiet.p50),
                lib.ms(quiet.p99),
                lib.ms(bare.p50),
                lib.ms(bare.p99),
                lib.ratio(quiet.p99, bare.p99),
                f"{quiet.rate:,.0f}",
            ]
        )
        section.data["button.sequential.quiet_p50"] = quiet.p50
        click = results[("button", "sequential", "full")]
        section.notes.append(
            f"Where a click's time goes: the same bot with the outbox not woken by the click "
            f"answers in {lib.ms(quiet.p50)} (p50) instead of {lib.ms(click.p50)}. "
            "`Server.kick()` starts `Dispatcher.run_once()` on the event loop while the "
            "listener is still running, and the dispatcher's database work (claim, "
            "thread-order check, finish: one synchronous transaction each, per message) runs "
            "on the event loop thread, so it holds up the click's own `chat.update` and every "
            "other request in flight. Running the dispatcher's store calls with "
            "`asyncio.to_thread` (as the tick already does for `Service.tick`), and waking it "
            "after the listener's last Slack call, are changes to `bot/outbox.py` and "
            "`bot/adapters/slack/app.py`, left to their owners."
        )
    section.notes.append(
        "`/escalate` answers only after views.open returns, because the listener opens the "
        "modal after `ack()` and, with process_before_response=True, Bolt sends the answer "
        "when the listener returns: the fake answers views.open in a few milliseconds, "
        "Slack itself in 100-300 ms, all of which Slack's 3-second clock counts. Opening the "
        "modal in a task after returning would take it out of the answer."
    )
    section.notes.append(
        "Commands come from the 33 people of the example directory in turn, with the bot's "
        "per-person limit raised to its maximum (600 a minute): the limit slows one person "
        "who sends many commands, which is not what is measured. Every click acknowledges a "
        "dispute of its own (bulk-copied into the database beforehand) and updates its message "
        "with chat.update; the run checks that the fake saw one views.open per `/escalate` and "
        "a chat.update per click."
    )
    for kind, label in KINDS.items():
        pairs = [
            (m, results[(kind, m, "full")], results[(kind, m, "bare")])
            for m in _modes(results, kind)
        ]
        worst = max(pairs, key=lambda p: p[1].p99 / p[2].p99)
        section.verdicts.append(
            lib.Verdict(
                f"{label}: p99 within 1.5x the bare app",
                all(full.p99 <= 1.5 * bare.p99 for _, full, bare in pairs),
                f"Worst {worst[1].p99 / worst[2].p99:.2f}x ({worst[0]}: {lib.ms(worst[1].p99)} "
                f"against {lib.ms(worst[2].p99)}).",
            )
        )
        concurrent = results[(kind, f"{clients} concurrent", "full")]
        section.verdicts.append(
            lib.Verdict(
                f"{label}: p99 under 100 ms with {clients} concurrent clients",
                concurrent.p99 < 0.1,
                f"{lib.ms(concurrent.p99)}; Slack's own limit is 3 s.",
            )
        )
    if said.get("violations"):
        section.notes.append(
            f"The fake Slack API recorded {said['violations']} malformed calls from the bot."
        )
    if problems:
        section.notes.append(f"The bot logged {len(problems)} warnings or errors during the run.")
    section.seconds = timer.perf_counter() - begun
    return section


def _modes(results: dict[tuple[str, str, str], Run], kind: str) -> list[str]:
    return sorted({m for k, m, _ in results if k == kind})


def main(argv: Sequence[str] | None = None) -> int:
    """Print the section as markdown, or run one of the child processes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--fake-slack", type=int, metavar="MESSAGES", help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=4, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fake_slack is not None:
        asyncio.run(fake_slack(args.fake_slack))
    elif args.serve:
        asyncio.run(serve(*args.serve))
    else:
        print(run(tiny=args.tiny).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
