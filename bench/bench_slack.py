"""Benchmark: how fast Slack gets its answer, from the whole bot and from a bare Bolt app.

Three processes besides this one, each on 127.0.0.1: the fake Slack Web API
(tests/fakes/slack_api.py, with the workspace's people), the bot as `serve` builds it
(`build_server` and `make_web_app`, on SQLite), and the baseline: the same aiohttp server with
a bare Bolt AsyncApp (process_before_response=True) that only acknowledges. This process
signs requests as Slack does and times each one from sending to the last byte of the answer.

Requests: `/escalate help` (answered in the ack), `/escalate` (answered at once, then the intake
modal opened with views.open) and the Acknowledge button on a dispute (answered at once, then a
database write and chat.update on the message clicked), each sequentially and from 20
concurrent clients, the bot and the bare app in turn (bench/latency.py).

Run: .venv/bin/python bench/bench_slack.py [--tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import time as timer
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as lib
import latency

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
HERE = Path(__file__).resolve()


# ---- child processes -----------------------------------------------------------------------


async def fake_slack(messages: int) -> None:
    """The fake Slack API with the workspace's people and `messages` DMs to Ben to click on."""
    from fakes.slack_api import FakeSlackApi

    class BenchSlack(FakeSlackApi):
        """The fake, with one more method: how much of the work asked for has reached it."""

        def _m_bench_done(self, args: dict[str, Any]) -> dict[str, Any]:
            views = updated = calls = 0
            seen: set[str] = set()
            for method, called in self.calls:
                calls += method != "bench.done"
                if method == "views.open":
                    views += 1
                elif method == "chat.update" and called.get("ts") not in seen:
                    seen.add(str(called.get("ts")))
                    updated += 1
            return {"views": views, "updated": updated, "calls": calls}

    # Views and blocks are checked once the run is over, not while the bot waits for the
    # answer: the check is this fake's CPU, which on this machine the bot would share.
    async with BenchSlack(token=TOKEN, check_later=True) as api:
        for user_id, (email, name) in people().items():
            api.add_user(user_id, email, name)
        ts = [
            api._m_chat_postMessage({"channel": "D" + BEN, "text": "Please acknowledge"})["ts"]
            for _ in range(messages)
        ]
        print(json.dumps({"url": api.base_url, "ts": ts}), flush=True)
        await latency.until_stdin_closes()
        checked = api.check_deferred()
        calls: dict[str, int] = {}
        arrived: dict[str, dict[str, float]] = {"views.open": {}, "chat.update": {}}
        for (method, args), at in zip(api.calls, api.arrivals, strict=True):
            if method == "bench.done":
                continue  # the benchmark's own questions
            calls[method] = calls.get(method, 0) + 1
            if method == "views.open":
                arrived[method][str(args.get("trigger_id"))] = at
            elif method == "chat.update":
                arrived[method].setdefault(str(args.get("ts")), at)
        said = {
            "violations": [f"{v.method}: {v.messages[:2]}" for v in api.violations[:5]],
            "checked": checked,
            "calls": calls,
            **arrived,
        }
        print(json.dumps(said), flush=True)


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
    """Serve the bot (`full`) or the bare app (`bare`) on a free port until stdin closes."""
    from aiohttp import web

    core = None
    if kind == "full":
        from bot import logs
        from bot.app import build_core
        from bot.config import Settings
        from bot.web import build_server, make_web_app, tune_garbage_collector

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
        app = make_web_app(server)
        tune_garbage_collector()  # as `serve` does
    else:
        app = bare_app(slack_url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await latency.until_stdin_closes()
    await runner.cleanup()
    if core is not None:
        core.store.dispose()


# ---- the load --------------------------------------------------------------------------------


def requests(
    kind: str, count: int, start: int, refs: list[str], ts: list[str], users: list[str]
) -> list[latency.Request]:
    """`count` requests of one kind, numbered from `start` (each trigger id used once), each
    keyed by what it makes the bot ask of Slack: a modal's trigger id, a clicked message."""
    from fakes.slack_signing import block_actions_body, block_actions_payload, signed_headers
    from fakes.slack_signing import slash_command_body as command

    from bot.adapters.slack.blocks import message_blocks
    from bot.messages import ActionId, Button, Message, Recipient

    out: list[latency.Request] = []
    for i in range(start, start + count):
        # Commands come from everyone in turn, as in a partnership: the bot slows one person
        # who sends many, which is not what is measured here.
        user = users[i % len(users)]
        key = ""
        if kind == "help":
            body = command(text="help", user_id=user, trigger_id=f"bench.help.{i}")
        elif kind == "modal":
            key = f"bench.modal.{i}"
            body = command(text="", user_id=user, trigger_id=key)
        else:
            key = ts[i]
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
        out.append(latency.Request(body, lambda body=body: signed_headers(SECRET, body), key))  # type: ignore[misc]
    return out


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


def serialising(database_url: str, config: Path) -> float:
    """Seconds of CPU slack_sdk takes to turn the intake modal into Slack's JSON (median)."""
    from bot.adapters.slack.app import SlackConversations
    from bot.clock import FakeClock

    clock = FakeClock(datetime.now(UTC))
    core = lib.make_core(database_url, clock, escalation_config=str(config))
    try:
        slack = SlackConversations(core.conversations, lambda: None, None)
        person = core.service.directory.people["amara.okafor"]
        runner = core.conversations.resume("bench:serialising", person, display_name="Amara")
        view = slack._intake_view(runner, [], {})
        times = []
        for _ in range(30):
            started = timer.perf_counter()
            view.to_dict()
            times.append(timer.perf_counter() - started)
        return lib.median(times)
    finally:
        core.store.dispose()


def run(*, tiny: bool = False) -> lib.Section:
    """Start the fake Slack, the bot and the bare app; time every kind and mode against both."""
    begun = timer.perf_counter()
    lib.clear_proxies()
    # Sequential: one request to each app in turn, 200 each (a p99 of 200 is about their
    # third slowest). Concurrent: rounds of 20 at once to each app in turn, 12 rounds, 240
    # each, so that a p99 is not one hiccup of the machine's. More would take the benchmark
    # towards its minute.
    warm, sequential, rounds = (3, 10, 2) if tiny else (10, 200, 12)
    calm = 0.04 if tiny else 0.16  # how long the fake must hear nothing before each measurement
    clients = 2 if tiny else CONCURRENT
    # Each click, on either app, takes a dispute of its own and a message of its own.
    clicks = 2 * (warm + sequential + clients * rounds)
    results: latency.Results = {}
    with lib.scratch("bench-slack-") as tmp:
        database = f"sqlite:///{tmp}/bot.db"
        config = slack_config(tmp)
        refs = latency.seed(database, clicks)
        cpu = serialising(database, config)
        # Everyone in the directory sends commands; in tiny mode a few, to keep it quick.
        users = sorted(people())[: 4 if tiny else None]
        slack = latency.Child(["--fake-slack", str(clicks)], tmp / "fake-slack.log", HERE)
        servers: dict[str, latency.Child] = {}
        try:
            url, ts = slack.ready["url"], slack.ready["ts"]
            for app in ("bare", "full"):  # started together, waited for below
                servers[app] = latency.Child(
                    ["--serve", app, database, str(config), url], tmp / f"{app}.log", HERE
                )
            urls = {
                app: f"http://127.0.0.1:{child.ready['port']}/slack/events"
                for app, child in servers.items()
            }
            used = {kind: 0 for kind in KINDS}
            to_bot = {kind: 0 for kind in KINDS}
            auth = {"Authorization": f"Bearer {TOKEN}"}
            api: Any = None

            def batcher(kind: str) -> Callable[[str, int], list[latency.Request]]:
                def batch(app: str, count: int) -> list[latency.Request]:
                    made = requests(kind, count, used[kind], refs, ts, users)
                    used[kind] += count
                    to_bot[kind] += count if app == "full" else 0
                    return made

                return batch

            def expect(kind: str) -> Callable[[str], bytes]:
                return lambda app: b"escalate list" if kind == "help" and app == "full" else b""

            async def settle(app: str) -> None:
                # Until the fake Slack has seen every modal and message update asked of the bot.
                if app != "full":
                    return
                for _ in range(5000):
                    async with api.post(f"{url}bench.done", headers=auth) as answer:
                        done = await answer.json()
                    if done["views"] >= to_bot["modal"] and done["updated"] >= to_bot["button"]:
                        return
                    await asyncio.sleep(0.002)
                raise RuntimeError(f"the bot did not finish its work: {to_bot}, Slack saw {done}")

            async def calls() -> int:
                async with api.post(f"{url}bench.done", headers=auth) as answer:
                    return int((await answer.json())["calls"])

            async def measure() -> None:
                nonlocal api
                async with latency.session(1) as api:
                    results.update(
                        await latency.measure(
                            urls,
                            batcher,
                            KINDS,
                            everyone=len(users),
                            warm=warm,
                            sequential=sequential,
                            rounds=rounds,
                            clients=clients,
                            expect=expect,
                            settle=settle,
                            calls=calls,
                            calm=calm,
                        )
                    )

            asyncio.run(measure())
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
    if said.get("violations"):
        raise RuntimeError(f"the bot made calls Slack would refuse: {said['violations']}")
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
        "Each latency is from sending the request to the last byte of the answer (what Slack's "
        "3-second clock counts); _work done_ is from sending it to the fake Slack receiving "
        "the call it causes (views.open for `/escalate`, chat.update for a click). The two "
        f"apps are measured in turn: sequentially, one request to each in turn, {sequential} "
        f"each; concurrently, {rounds} rounds of {clients} requests at once to each in turn; "
        "each round waits until the bot's work for the last is done (for clicks, the notices "
        "the outbox sends after them too: the fake Slack hears nothing for "
        f"{calm * 125:.0f} ms), and each kind and mode until it has heard nothing from the bot "
        f"for {calm * 1000:.0f} ms, so "
        "that no work left over is timed as the next request's latency. All four processes "
        "(client, fake Slack, bot, bare app) share the machine's CPUs.",
        latency.headings("request", "bot req/s", done=True),
    )
    done = {"modal": said.get("views.open", {}), "button": said.get("chat.update", {})}
    latency.table(section, results, KINDS, done)
    latency.verdicts(section, results, KINDS, clients, "bare app")
    section.data["modal.serialise"] = cpu
    d = section.data
    section.notes.append(
        "`/escalate` and the buttons are answered as soon as the request is read (Bolt's ack); "
        "the rest happens after, once every answer has been written and no request has waited "
        "for one for 2 ms (bot/inflight.py: that work holds the GIL, and started earlier it "
        "made answers wait, up to 5 ms each). For `/escalate` the person's intake is resumed "
        "and its modal built and serialised on a worker thread, then views.open is called; for "
        "a click the "
        "acknowledgement is recorded (a transaction, on a worker thread), the message updated "
        "with chat.update and the outbox woken. Slack's clock stops at the ack; what the person "
        f"waits for is the work done column: a modal opens {lib.ms(d['modal.sequential.done_p99'])}"
        f" (p99) after `/escalate` one at a time, {lib.ms(d[f'modal.{clients}.done_p99'])} when "
        f"{clients} people ask at once: serialising the intake modal with slack_sdk "
        f"(`View.to_dict()`, which validates every element) takes {lib.ms(cpu)} of CPU, and "
        f"the {clients} share the machine's CPUs with everything else. A click's message is "
        f"updated {lib.ms(d['button.sequential.done_p99'])} after it one at a time, "
        f"{lib.ms(d[f'button.{clients}.done_p99'])} for {clients} at once: SQLite takes one "
        "writer at a time, so the acknowledgements are recorded in turn."
    )
    section.notes.append(
        "What the bot does for every request beyond the bare app's ack is kept off the "
        "answers where it can be: each request's JSON log line and metrics are done once the "
        "burst's answers are written (`InFlight.defer`); the listeners waiting for quiet share "
        "one patience timer, and the 2-second budget keeps its deadlines in arrival order "
        "under one timer, rather than a timer each for the event loop to sort. What remains "
        "before the answer is real work: the rate limit, finding the person, the reply's "
        "blocks as JSON, the listener's task, and Bolt matching more listeners than the bare "
        "app has."
    )
    section.notes.append(
        "Commands come from the people of the example directory in turn, with the bot's "
        "per-person limit raised to its maximum (600 a minute): the limit slows one person "
        "who sends many commands, which is not what is measured. Every click acknowledges a "
        "dispute of its own (bulk-copied into the database beforehand) and updates its message "
        "with chat.update; the run checks that the fake saw one views.open per `/escalate` and "
        "a chat.update per click. The bot tunes its garbage collector as `serve` does "
        "(`tune_garbage_collector`: its start-up heap frozen out of it, young objects "
        "collected after 10,000 more are made than freed rather than 700, as slack_sdk "
        "leaves a small reference cycle for every Block Kit element it serialises); this "
        "process, standing in for Slack, times with its own collector off, so that no "
        "collection of its own (tens of milliseconds for a full one) is counted as latency."
    )
    section.notes.append(
        "The fake Slack API checks every view and message's blocks as Slack would (Block Kit "
        "limits, required fields) once the run is over rather than while the bot waits for "
        f"its answer, and the run fails on any problem: {said.get('checked', 0):,} checked."
    )
    if problems:
        section.notes.append(f"The bot logged {len(problems)} warnings or errors during the run.")
    section.seconds = timer.perf_counter() - begun
    return section


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
