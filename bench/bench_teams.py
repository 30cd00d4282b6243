"""Benchmark: how fast a Teams activity is answered, by the whole bot and by a bare bot.

Three processes besides this one, each on 127.0.0.1: the fake Bot Connector
(tests/fakes/bot_connector.py: it signs the Bot Framework service's tokens, publishes their
keys, and receives what the bot sends; it checks the cards against the schema after the run,
not while it is timed), the bot as `serve` builds it (`POST /api/messages`,
on SQLite), and the baseline: the same endpoint and CloudAdapter around a bare
ActivityHandler that answers every message with one line of text. Both answer a message once
its token is checked and run its turn after (bot/adapters/teams/turns.py). This process posts
activities as Teams does, each with a valid token, and times each one until the HTTP answer,
and until the work it causes (a reply, a card updated) reaches the connector.

Activities: `escalate help` (a card in reply), `escalate` (the intake form as a card) and the
Acknowledge button on a dispute's card (Action.Submit: a database write, then the card is
updated in place), each sequentially and from 20 concurrent clients.

Run: .venv/bin/python bench/bench_teams.py [--tiny]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import shutil
import time as timer
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as lib
import latency
from latency import CONCURRENT, Child

APP_ID = "5f0c1f7e-6b1d-4c2a-9e3f-00000000e5c1"
TENANT = "0d7a9e52-3c41-4b8e-a1f2-00000000b0a7"
BOT = {"id": f"28:{APP_ID}", "name": "Escalation bot"}
KINDS = {
    "help": "`escalate help`",
    "modal": "`escalate` (the intake form)",
    "button": "Acknowledge button",
}
BEN = "ben"
HERE = Path(__file__).resolve()


@functools.cache
def people() -> dict[str, tuple[str, str]]:
    """Everyone in the example directory as a Teams user: key -> (email, name).

    Read once: parsing the YAML takes tens of milliseconds, and each batch of requests needs it.
    """
    import yaml

    listed = yaml.safe_load((lib.EXAMPLE_CONFIG.parent / "directory.yaml").read_text())["people"]
    return {
        BEN if p["id"] == "ben.carter" else p["id"].replace(".", ""): (p["email"], p["name"])
        for p in listed
        if p.get("email")
    }


def chat(key: str) -> str:
    """A user's personal chat with the bot, as the fake names it."""
    return f"a:personal-29:{key}"


# ---- child processes -----------------------------------------------------------------------


async def fake_connector(cards: int) -> None:
    """The fake Bot Connector with the directory's people, and `cards` cards in Ben's chat."""
    from aiohttp import web
    from fakes.bot_connector import BotConnectorRecord, FakeBotConnector

    class BenchConnector(FakeBotConnector):
        """The fake, with one more address: how much of the work asked for has reached it."""

        def _app(self) -> web.Application:
            app = super()._app()
            app.router.add_get("/bench/done", self._bench_done)
            return app

        async def _bench_done(self, request: web.Request) -> web.Response:
            with self._lock:
                replied, updated = done(self.records)
                calls = len(self.records) + len(self.created)
            return web.json_response(
                {"replied": len(replied), "updated": len(updated), "calls": calls}
            )

    # Cards are checked against the schema once the run is over, not while it is timed: the
    # check costs this fake 9 to 70 ms a card, which is not the bot's time.
    async with BenchConnector(app_id=APP_ID, check_cards_later=True) as fake:
        for key, (email, name) in people().items():
            fake.add_member(f"29:{key}", f"aad-{key}", name, email)
        card_ids = [str(1_600_000_000_000 + i) for i in range(cards)]
        for card_id in card_ids:  # as if the bot had sent each of them earlier
            fake.records.append(
                BotConnectorRecord(
                    "POST", chat(BEN), card_id, {"type": "message", "text": "Please acknowledge"}
                )
            )
        print(
            json.dumps(
                {
                    "service_url": fake.service_url,
                    "openid_url": fake.openid_url,
                    "bot_token": fake.bot_token,
                    "token": fake.token(expires_in=3 * 3600),
                    "cards": card_ids,
                }
            ),
            flush=True,
        )
        await latency.until_stdin_closes()
        sent = fake.sent()
        replied, updated = done(sent)
        checking = timer.perf_counter()
        # Nothing is timed now: every CPU may check cards.
        await asyncio.to_thread(fake.check_cards, os.cpu_count() or 1)
        check_seconds = timer.perf_counter() - checking
        print(
            json.dumps(
                {
                    "violations": fake.violations[:5],
                    "posts": sum(r.method == "POST" for r in sent) - cards,
                    "puts": sum(r.method == "PUT" for r in sent),
                    "cards": sum(len(r.cards) for r in sent[cards:]),
                    "check_seconds": check_seconds,
                    "replied": replied,
                    "updated": updated,
                }
            ),
            flush=True,
        )


def done(records: Sequence[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """When the first reply to each activity, and the first update of each card, arrived."""
    replied: dict[str, float] = {}
    updated: dict[str, float] = {}
    for record in records:
        if record.method == "POST" and record.reply_to:
            replied.setdefault(record.reply_to, record.arrived)
        elif record.method == "PUT":
            updated.setdefault(record.activity_id, record.arrived)
    return replied, updated


def credentials(bot_token: str) -> Any:
    """The bot's own token from the fake, never from Microsoft's sign-in service."""
    from botframework.connector.auth import ServiceClientCredentialsFactory
    from msrest.authentication import Authentication

    class Token(Authentication):
        def signed_session(self, session: Any = None) -> Any:
            session = super().signed_session(session)
            session.headers["Authorization"] = f"Bearer {bot_token}"
            return session

    class Credentials(ServiceClientCredentialsFactory):
        async def is_valid_app_id(self, app_id: str) -> bool:
            return app_id == APP_ID

        async def is_authentication_disabled(self) -> bool:
            return False

        async def create_credentials(
            self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
        ) -> Authentication:
            return Token()

    return Credentials()


async def serve(kind: str, database_url: str, config: str, openid_url: str, bot_token: str) -> None:
    """Serve the bot (`full`) or the bare bot on a free port until stdin closes."""
    from aiohttp import web
    from botbuilder.core import ActivityHandler, TurnContext
    from botbuilder.integration.aiohttp import CloudAdapter
    from botframework.connector.auth import ChannelValidation

    from bot.adapters.teams.bot import TeamsEndpoint, teams_authentication
    from bot.adapters.teams.turns import Turns
    from bot.config import Settings
    from bot.inflight import InFlight
    from bot.web import answer_in_flight

    # The token checks read the signing keys from the fake, not from a Microsoft host.
    ChannelValidation.open_id_metadata_endpoint = openid_url
    settings = Settings(
        database_url=database_url,
        escalation_config=config,
        microsoft_app_id=APP_ID,
        microsoft_app_password="not-used-by-the-fake-credentials",
        microsoft_app_tenant_id=TENANT,
        # The most the settings allow, as in the Slack benchmark: no one person is slowed.
        command_rate_per_minute=600,
        command_burst=600,
    )
    core = None
    if kind == "full":
        from bot import logs
        from bot.app import build_core
        from bot.web import build_server, make_web_app, tune_garbage_collector

        logs.configure(settings.log_level, "json")  # as `serve` does: a JSON line per request
        core = build_core(settings, migrate=False)
        server = build_server(core, tick=False, teams_credentials=credentials(bot_token))
        app = make_web_app(server)
        tune_garbage_collector()  # as `serve` does
    else:

        class Bare(ActivityHandler):
            async def on_message_activity(self, turn_context: TurnContext) -> None:
                await turn_context.send_activity("Got it.")

        adapter = CloudAdapter(
            teams_authentication(settings, credentials_factory=credentials(bot_token))
        )
        # The same endpoint as the bot's: answered once authenticated, the turn run after the
        # answers in flight are written, counted as bot/web.py counts them.
        inflight = InFlight()

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            return await answer_in_flight(inflight, request, handler)

        endpoint = TeamsEndpoint(adapter, Bare(), Turns(inflight))
        app = web.Application(middlewares=[count])
        app.router.add_post("/api/messages", endpoint.handle)
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

_ids = itertools.count(1)


def activity(
    key: str,
    name: str,
    service_url: str,
    *,
    text: str | None = None,
    value: dict[str, Any] | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """A message activity as Teams sends it, in the user's personal chat with the bot."""
    data: dict[str, Any] = {
        "type": "message",
        "id": f"1700000{next(_ids):06d}",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": f"29:{key}", "name": name, "aadObjectId": f"aad-{key}"},
        "recipient": BOT,
        "locale": "en-GB",
        "channelData": {"tenant": {"id": TENANT}},
        "conversation": {"id": chat(key), "conversationType": "personal", "tenantId": TENANT},
    }
    if text is not None:
        data["text"] = text
    if value is not None:
        data["value"] = value
    if reply_to is not None:
        data["replyToId"] = reply_to
    return data


def requests(
    app: str,
    kind: str,
    count: int,
    start: int,
    *,
    refs: list[str],
    cards: list[str],
    users: list[str],
    service_url: str,
    token: str,
) -> list[latency.Request]:
    """`count` activities of one kind, numbered from `start`."""
    everyone = people()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    out: list[latency.Request] = []
    for i in range(start, start + count):
        key = users[i % len(users)]
        name = everyone[key][1]
        if kind == "help":
            body = activity(key, name, service_url, text="escalate help")
        elif kind == "modal":
            body = activity(key, name, service_url, text="escalate")
        else:
            body = activity(
                BEN,
                everyone[BEN][1],
                service_url,
                value={"action": "acknowledge", "ref": refs[i]},
                reply_to=cards[i],
            )
        # The work it causes is known by the activity replied to, or the card the bot updates
        # (the bare bot replies to a click too).
        work = cards[i] if kind == "button" and app == "full" else body["id"]
        out.append(latency.Request(json.dumps(body).encode(), lambda: headers, work))
    return out


def teams_config(tmp: Path) -> Path:
    """The example partnership with Teams channel ids."""
    shutil.copytree(lib.EXAMPLE_CONFIG.parent, tmp / "cfg")
    config = tmp / "cfg" / "partnership.yaml"
    config.write_text(
        config.read_text()
        .replace(
            "disputes: {slack: null, teams: null}",
            'disputes: {slack: null, teams: "19:disputes-channel@thread.tacv2"}',
        )
        .replace(
            "oversight: {slack: null, teams: null}",
            'oversight: {slack: null, teams: "19:oversight-channel@thread.tacv2"}',
        )
    )
    return config


def run(*, tiny: bool = False) -> lib.Section:
    """Start the fake connector, the bot and the bare bot; time each kind and mode."""
    begun = timer.perf_counter()
    lib.clear_proxies()
    # Sequential: 100 to each in turn (a p99 of 100 is about their second slowest; fewer than
    # Slack's 200, as a click here waits for its card and its notices, and the benchmark
    # should take under a minute). Concurrent: 10 rounds of 20 at once to each in turn, 200
    # each: with 4 rounds a p99 was the slowest of 80, one hiccup of the machine's.
    warm, sequential, rounds = (3, 10, 2) if tiny else (10, 100, 10)
    calm = 0.04 if tiny else 0.16  # how long the fake must hear nothing before each measurement
    clients = 2 if tiny else CONCURRENT
    clicks = 2 * (warm + sequential + clients * rounds)
    results: latency.Results = {}
    with lib.scratch("bench-teams-") as tmp:
        database = f"sqlite:///{tmp}/bot.db"
        config = teams_config(tmp)
        refs = latency.seed(database, clicks)
        users = sorted(people())[: 4 if tiny else None]
        fake = Child(["--fake-teams", str(clicks)], tmp / "fake-teams.log", HERE)
        servers: dict[str, Child] = {}
        try:
            ready = fake.ready
            for app in ("bare", "full"):  # started together, waited for below
                servers[app] = Child(
                    [
                        "--serve-teams",
                        app,
                        database,
                        str(config),
                        ready["openid_url"],
                        ready["bot_token"],
                    ],
                    tmp / f"{app}.log",
                    HERE,
                )
            urls = {
                app: f"http://127.0.0.1:{child.ready['port']}/api/messages"
                for app, child in servers.items()
            }
            used = {kind: 0 for kind in KINDS}
            to_bot = {kind: 0 for kind in KINDS}
            to_bare = {kind: 0 for kind in KINDS}
            api: Any = None

            def batcher(kind: str) -> Callable[[str, int], list[latency.Request]]:
                def batch(app: str, count: int) -> list[latency.Request]:
                    made = requests(
                        app,
                        kind,
                        count,
                        used[kind],
                        refs=refs,
                        cards=ready["cards"],
                        users=users,
                        service_url=ready["service_url"],
                        token=ready["token"],
                    )
                    used[kind] += count
                    (to_bot if app == "full" else to_bare)[kind] += count
                    return made

                return batch

            async def settle(app: str) -> None:
                # Until the connector has every reply and card update asked of either bot.
                # Every message is replied to (the bare bot replies to clicks too); the bot
                # updates the card clicked instead.
                replies = sum(to_bot.values()) - to_bot["button"] + sum(to_bare.values())
                for _ in range(5000):
                    async with api.get(f"{ready['service_url']}bench/done") as answer:
                        seen = await answer.json()
                    if seen["replied"] >= replies and seen["updated"] >= to_bot["button"]:
                        return
                    await asyncio.sleep(0.002)
                raise RuntimeError(f"the bot did not finish its work: {to_bot}, saw {seen}")

            async def calls() -> int:
                async with api.get(f"{ready['service_url']}bench/done") as answer:
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
                            statuses=(201, 202),
                            settle=settle,
                            calls=calls,
                            calm=calm,
                        )
                    )

            asyncio.run(measure())  # it waits for the notices the last clicks caused
        finally:
            for child in servers.values():
                child.stop()
            said = fake.stop()
        full_log = (tmp / "full.log").read_text()
    failed = sum(r.failures for r in results.values())
    if failed:
        raise RuntimeError(
            f"{failed} activities were not answered 201 or 202; "
            f"the bot's log ends:\n{full_log[-3000:]}"
        )
    answered = to_bot["help"] + to_bot["modal"]
    if (
        said.get("violations")
        or said.get("puts", 0) < to_bot["button"]
        or said.get("posts", 0) < answered
    ):
        raise RuntimeError(
            f"the bot did not do the work asked of it: {to_bot} activities, the connector "
            f"saw {said}; the bot's log ends:\n{full_log[-3000:]}"
        )
    problems = [line for line in full_log.splitlines() if '"level": "info"' not in line]

    section = lib.Section(
        2,
        "Teams message latency",
        "Activities posted as the Bot Framework service posts them (a signed token, checked "
        "against the fake connector's keys) into the bot as `serve` runs it (CloudAdapter "
        "behind `POST /api/messages`, SQLite) and into the baseline, the same endpoint and "
        "adapter around a bare ActivityHandler that answers each message with one line of "
        "text. Both answer a message (202) as soon as its token is checked and run its turn "
        "after, once no other answer is waiting (bot/adapters/teams/turns.py). Each latency "
        "is from sending the activity to its HTTP answer (what the Bot Framework service's "
        "10-15 second clock counts); _work done_ is from sending it to the connector "
        "receiving the reply, or for the bot's click the update of the card clicked: what "
        "the person waits for, the bot's against the bare bot's line of text. The two "
        f"bots are measured in turn: sequentially, one activity to each in turn, {sequential} "
        f"each; concurrently, {rounds} rounds of {clients} activities at once to each in turn; "
        "each round waits until both bots' work for the last is done (for clicks, the "
        "notices the outbox sends after them too: the connector hears nothing for "
        f"{calm * 125:.0f} ms), and "
        f"each kind and mode until it has heard nothing for {calm * 1000:.0f} ms, so that no "
        "work left over is timed as the next request's latency. All four processes "
        "(client, fake connector, bot, bare bot) share the machine's CPUs.",
        latency.headings("activity", "bot activities/s", done=True, bare_done=True),
    )
    done = {"help": said["replied"], "modal": said["replied"], "button": said["updated"]}
    bare_done = dict.fromkeys(KINDS, said["replied"])
    latency.table(section, results, KINDS, done, bare_done)
    latency.verdicts(section, results, KINDS, clients, "bare bot")
    section.notes.append(
        "The Teams handler (`bot/adapters/teams/bot.py`) runs its database work in worker "
        "threads (`asyncio.to_thread`), as the Slack listeners do, and writes a conversation "
        "reference only when it changed (or an hour after it was last written), not on every "
        "turn. The outbox's Teams sends read the store in a worker thread too; the check the "
        "outbox makes on the event loop before each send (`can_reach`) reads it once per "
        "recipient, as a reference once found is never deleted. Both bots authenticate "
        "through `teams_authentication` (bot/adapters/teams/clients.py), which keeps one Bot "
        "Connector client and one token client per service URL rather than building two for "
        "each turn and each proactive send, with their connections; trusts a token it has "
        "already checked, for the same service URL and channel, until it expires and for at "
        "most 5 minutes, rather than parsing it and verifying its signature again on every "
        "activity (bot/adapters/teams/tokens.py); skips msrest's check of each body against "
        "constraints its models do not declare; and serialises cards with json rather than "
        "node by node with msrest: the baseline gains as much as the bot from all of that. "
        "The bot's cards are also not deep-copied by botbuilder on the way "
        "out (`SentCard`). The bot tunes its garbage collector as `serve` does "
        "(`tune_garbage_collector`: its start-up heap frozen out of it, young objects "
        "collected less often); this process, standing in for Microsoft, times with its "
        "own collector off, so that no full collection is counted as latency."
    )
    checked, check_seconds = said.get("cards", 0), said.get("check_seconds", 0.0)
    section.notes.append(
        "The fake connector checks each card against the Adaptive Card 1.5 schema when the "
        "run is over, not while it is timed (the run fails if any card is invalid): that "
        f"took it {check_seconds:.1f} s for the {checked:,} cards the bot sent, each "
        "distinct card checked once, time that is the fake's and not the bot's."
    )
    d = section.data
    wide = str(clients)

    def work(kind: str, mode: str) -> str:
        finished, bare = d.get(f"{kind}.{mode}.done_p99"), d.get(f"{kind}.{mode}.bare_done_p99")
        if finished is None or bare is None:
            return "-"
        return f"{lib.ms(finished)} against {lib.ms(bare)} ({finished / bare:.1f}x)"

    section.notes.append(
        "Microsoft's clock stops at the HTTP answer, and the verdicts above are on it, as "
        "Slack's are on the ack. What the person waits for is the work done: there the bot "
        "does more than the bare bot's line of text, and no target is set on it. Work done, "
        f"p99, the bot against the bare bot, one at a time and with {clients} at once: "
        f"`escalate help` {work('help', 'sequential')} and {work('help', wide)}; the intake "
        f"form {work('modal', 'sequential')} and {work('modal', wide)}; a click (the bot "
        f"updates the card) {work('button', 'sequential')} and {work('button', wide)}. A "
        "click costs the store's work beyond the bare bot: the acknowledgement itself (the "
        "dispute, its events and participants saved, its messages queued: about 6 ms, one "
        "statement per table; its deadlines only if they changed) and its status for the "
        "updated card, then the outbox sending those messages from the same process, each a "
        "Bot Connector call. On SQLite each write takes the database's one write lock "
        "(`BEGIN IMMEDIATE`, store/db.py; reads take none): concurrent clicks queue for it in "
        "the store, one after another (a lock in the process, not SQLite's sleep-and-poll). "
        f"With {clients} at once the bare bot's own replies take up to "
        f"{lib.ms(max(d.get(f'{k}.{wide}.bare_done_p99', 0.0) for k in KINDS))}: reading "
        "each activity and serialising each reply with msrest, and sending it with "
        "`requests` in a worker thread, is botbuilder's work on one event loop, shared with "
        "this process and the fake connector."
    )
    section.notes.append(
        "Messages come from the 33 people of the example directory in turn; every click "
        "acknowledges a dispute of its own and updates its card in place (a PUT to the "
        "connector); the run checks that the connector saw a reply for every message and an "
        "update for every click, and no malformed call."
    )
    if problems:
        section.notes.append(f"The bot logged {len(problems)} warnings or errors during the run.")
    section.seconds = timer.perf_counter() - begun
    return section


def main(argv: Sequence[str] | None = None) -> int:
    """Print the section as markdown, or run one of the child processes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a tiny run, for the test suite")
    parser.add_argument("--fake-teams", type=int, metavar="CARDS", help=argparse.SUPPRESS)
    parser.add_argument("--serve-teams", nargs=5, metavar="X", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fake_teams is not None:
        asyncio.run(fake_connector(args.fake_teams))
    elif args.serve_teams:
        asyncio.run(serve(*args.serve_teams))
    else:
        print(run(tiny=args.tiny).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
