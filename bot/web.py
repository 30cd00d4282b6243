"""The one aiohttp server: the chat platforms' endpoints, health, metrics, and the tick.

Bolt has no handler for an existing aiohttp app (DESIGN.md), so `/slack/events` converts
requests with Bolt's own helpers around `AsyncApp.async_dispatch`. The timekeeper starts with
the server (the scheduler must start inside the running loop) and stops with it.

Shutdown (SIGTERM): aiohttp stops accepting requests and lets those in flight finish; then the
tick stops after the one in progress (its sends included), Slack listeners still at work after
their ack and Teams turns after their answer finish, and the database connections close, all
within SHUTDOWN_SECONDS. A send cut off by that bound is not lost: its claim lapses and it is
sent after the restart, once.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import Platform
from bot.adapters.slack.app import Budget, build_slack_app
from bot.adapters.slack.http import handle_slack_request
from bot.adapters.slack.platform import SlackPlatform
from bot.adapters.teams.bot import TeamsEndpoint, build_teams
from bot.app import Core
from bot.inflight import InFlight
from bot.metrics import Metrics
from bot.outbox import Dispatcher
from bot.ratelimit import RateLimiter
from bot.scheduler import Timekeeper
from store import db

log = logging.getLogger(__name__)


@dataclass
class Server:
    """What the web application runs: the platforms, the outbox and the tick."""

    core: Core
    platforms: list[Platform] = field(default_factory=list)
    slack_app: AsyncApp | None = None
    slack_client: AsyncWebClient | None = None
    inflight: InFlight = field(default_factory=InFlight)
    budget: Budget = field(default_factory=lambda: Budget(2.0))
    dispatcher: Dispatcher | None = None
    timekeeper: Timekeeper | None = None
    metrics: Metrics | None = None
    teams: TeamsEndpoint | None = None
    _kicks: set[asyncio.Task[object]] = field(default_factory=set)
    _kicked_again: bool = False

    def kick(self) -> None:
        """Send what was just queued now rather than at the next tick.

        Kicks while a send is running are folded into one more pass after it: twenty clicks
        at once make one or two passes over the outbox, not twenty passes competing for the
        same rows (and, on SQLite, for its one write lock).
        """
        if self.dispatcher is None:
            return
        if self._kicks:
            self._kicked_again = True
            return
        task = asyncio.get_running_loop().create_task(self._send_now())
        self._kicks.add(task)  # keep a reference until it is done (asyncio's advice)
        task.add_done_callback(self._kicks.discard)

    async def _send_now(self) -> None:
        assert self.dispatcher is not None
        # Sending is CPU work on the loop (serialising cards and blocks): the requests being
        # answered go first, the one that kicked included (bot/inflight.py).
        await self.inflight.quiet()
        while True:
            self._kicked_again = False
            report = await self.dispatcher.run_once()
            if self.metrics is not None:
                self.metrics.observe_sends(report)
            if not self._kicked_again:
                return

    async def settle(self) -> None:
        """Wait for the work after answers (Slack listeners, Teams turns), and the sends kicked."""
        if self.teams is not None and self.teams.turns is not None:
            await self.teams.turns.settle()
        await self.budget.settle()
        while self._kicks:
            await asyncio.gather(*list(self._kicks))


def slack_client(core: Core) -> AsyncWebClient:
    """The Web API client, pointed at SLACK_API_URL (tests and GovSlack use another host)."""
    settings = core.settings
    base = (
        settings.slack_api_url
        if settings.slack_api_url.endswith("/")
        else settings.slack_api_url + "/"
    )
    # slack_sdk formats every request, its data included, into a debug message whenever its
    # logger's own level is unset (it tests `logger.level`, not the effective level): a
    # quarter of a millisecond of the event loop per call, for a message never shown. Its
    # warnings still go out.
    quiet = logging.getLogger("slack_sdk.web.escalation")
    quiet.setLevel(logging.WARNING)
    # No retries inside the client: a retried POST after a dropped connection can post twice.
    # The outbox owns retries (and knows how to check what already went).
    return AsyncWebClient(
        token=settings.slack_bot_token, base_url=base, retry_handlers=[], logger=quiet
    )


def build_server(core: Core, *, tick: bool = True, teams_credentials: Any = None) -> Server:
    """Wire the enabled platforms, the outbox and the tick around the core.

    `teams_credentials` replaces the Teams app password's token requests (tests).
    """
    settings = core.settings
    # The directory with the people remembered from chat, read now: requests look people up in
    # it on the event loop, and the first of them should not be the one to read the database.
    _ = core.service.partnership
    inflight = InFlight()
    server = Server(
        core,
        inflight=inflight,
        budget=Budget(settings.slack_ack_budget, inflight),
        metrics=Metrics(core.store, core.service.clock),
    )
    if settings.slack_enabled:
        client = server.slack_client = slack_client(core)
        channels = {
            name: ids.slack for name, ids in core.partnership.config.channels.items() if ids.slack
        }
        server.platforms.append(
            SlackPlatform(
                client,
                lambda: core.service.directory,
                channels,
                remember=lambda person, uid: core.service.remember_person(
                    {**person.model_dump(mode="json", exclude_none=True), "slack_id": uid}
                ),
            )
        )
        server.slack_app = build_slack_app(
            core.conversations,
            client,
            settings.slack_signing_secret or "",
            server.kick,
            server.budget,
            # Each person's /escalate commands, paced on the bot's clock (bot/ratelimit.py).
            RateLimiter(
                per_minute=settings.command_rate_per_minute,
                burst=settings.command_burst,
                clock=core.service.clock,
            ),
        )
    if settings.teams_enabled:
        server.teams, teams_platform = build_teams(
            core,
            server.kick,
            lambda: server.platforms,
            inflight=inflight,
            credentials_factory=teams_credentials,
        )
        server.platforms.append(teams_platform)
    server.dispatcher = core.dispatcher(server.platforms)
    if tick:
        server.timekeeper = Timekeeper(
            core.service, server.dispatcher, settings.tick_seconds, server.metrics
        )
    return server


def readiness(server: Server) -> dict[str, dict[str, object]]:
    """Each readiness check: database reachable, schema current, tick running, outbox moving."""
    core = server.core
    checks: dict[str, dict[str, object]] = {}
    try:
        url = core.settings.database_url
        current, head = db.current_revision(core.store.engine), db.head_revision(url)
        checks["database"] = {"ok": True}
        checks["migrations"] = {
            "ok": current == head,
            **({} if current == head else {"detail": f"at {current}, code expects {head}"}),
        }
    except Exception as exc:  # any failure to reach the database is "not ready", named
        checks["database"] = {"ok": False, "detail": exc.__class__.__name__}
        checks["migrations"] = {"ok": False, "detail": "database unreachable"}
    if server.timekeeper is not None:
        running = server.timekeeper.running
        checks["scheduler"] = {"ok": running, **({} if running else {"detail": "not running"})}
    if checks["database"]["ok"]:
        with core.store.reading() as session:
            oldest = core.store.oldest_unsent(session)
        limit = timedelta(seconds=core.settings.outbox_stuck_seconds)
        age = core.service.clock.now() - oldest if oldest else timedelta(0)
        stuck = age > limit
        checks["outbox"] = {
            "ok": not stuck,
            **(
                {"detail": f"oldest unsent message is {int(age.total_seconds())} s old"}
                if stuck
                else {}
            ),
        }
    return checks


async def answer_in_flight(
    inflight: InFlight,
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Answer a request, counted in flight until the answer is written (bot/inflight.py)."""
    with inflight.request():
        response = await handler(request)
        # Written here, not after the middleware returns: work waiting for quiet would
        # otherwise start before the answer is out, and delay it.
        await response.prepare(request)
        await response.write_eof()
    return response


def account_for(
    metrics: Metrics | None,
    request_id: str,
    platform: str,
    path: str,
    outcome: str,
    elapsed: float,
) -> None:
    """One platform request counted, timed and logged (a JSON line, no content)."""
    if metrics is not None:
        metrics.requests.labels(platform, outcome).inc()
        metrics.latency.labels(platform).observe(elapsed)
    log.info(
        "request",
        extra={
            "request_id": request_id,
            "platform": platform,
            "path": path,
            "status": outcome,
            "duration_ms": round(elapsed * 1000, 1),
        },
    )


PLATFORM_PATHS = {"/slack/events": "slack", "/api/messages": "teams"}
REQUEST_ID = web.RequestKey("request_id", str)


def make_web_app(server: Server) -> web.Application:
    """The aiohttp application: the platforms, /healthz, /readyz, /metrics, and the tick."""
    metrics = server.metrics

    @web.middleware
    async def account(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # A request id for the logs, and each platform request counted and timed.
        request[REQUEST_ID] = request.headers.get("X-Request-Id") or secrets.token_hex(8)
        platform = PLATFORM_PATHS.get(request.path)
        started = time.perf_counter()
        outcome = "error"
        try:
            if platform is None:
                response = await handler(request)
            else:
                response = await answer_in_flight(server.inflight, request, handler)
            outcome = "ok" if response.status < 400 else f"{response.status // 100}xx"
            return response
        except web.HTTPException as exc:
            outcome = f"{exc.status // 100}xx"
            raise
        finally:
            if platform is not None:
                # Counted and logged once the answers in flight are written, not between them.
                server.inflight.defer(
                    functools.partial(
                        account_for,
                        metrics,
                        request[REQUEST_ID],
                        platform,
                        request.path,
                        outcome,
                        time.perf_counter() - started,
                    )
                )

    app = web.Application(client_max_size=1024 * 1024, middlewares=[account])

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        checks = await asyncio.to_thread(readiness, server)
        ready = all(check["ok"] for check in checks.values())
        failed = [name for name, check in checks.items() if not check["ok"]]
        body = {"status": "ready" if ready else "not ready", "failed": failed, "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_page(request: web.Request) -> web.Response:
        assert metrics is not None
        server.inflight.flush()  # every request answered so far counted
        text = await asyncio.to_thread(metrics.exposition)
        return web.Response(body=text, content_type="text/plain", charset="utf-8")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_page)

    if server.slack_app is not None:
        slack_app = server.slack_app

        async def slack_events(request: web.Request) -> web.Response:
            # A body Bolt cannot read is a 400, not a 500 (bot/adapters/slack/http.py).
            return await handle_slack_request(slack_app, request)

        app.router.add_post("/slack/events", slack_events)

    if server.teams is not None:
        app.router.add_post("/api/messages", server.teams.handle)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        client, pool = server.slack_client, None
        if client is not None and client.session is None:
            # One connection pool for every Web API call while serving: without it slack_sdk
            # opens (and, with Slack, TLS-handshakes) a new connection for each call.
            pool = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=client.timeout))
            client.session = pool
        if server.timekeeper is not None:
            server.timekeeper.start()
        yield
        try:
            await asyncio.wait_for(stop(server), server.core.settings.shutdown_seconds)
        except TimeoutError:
            log.warning("shutdown bound reached; unfinished sends will go after the restart")
        finally:
            if pool is not None and client is not None:
                client.session = None
                await pool.close()

    app.cleanup_ctx.append(lifetime)
    return app


async def stop(server: Server) -> None:
    """Finish the tick in progress and the work in flight."""
    if server.timekeeper is not None:
        await server.timekeeper.stop()
    await server.settle()
    server.inflight.flush()  # the last requests' log lines and metrics


# Collect the youngest objects once 10,000 more have been made than freed, not 700. Block
# Kit's to_dict (slack_sdk) leaves a small reference cycle for each element it serialises
# (a recursive inner function and its closure cell), about twenty for each modal or message:
# with Python's default the collector ran every few requests, and now and then a young
# collection that promoted work in progress made the next one costly (10-36 ms, with the
# event loop stopped). At 10,000 the young collections are a twentieth as many, 1-5 ms each.
YOUNG_THRESHOLD = 10_000
OLDER_THRESHOLD = 20


def tune_garbage_collector() -> None:
    """Collect the garbage of start-up, exempt what is left, and collect young objects less often.

    What the server is built from (the partnership, SQLAlchemy's mappers, Bolt, botbuilder,
    every module) lives as long as the process. Left in the collector's oldest generation, each
    full collection walks all of it: 20-80 ms with the event loop stopped, every few hundred
    requests, and every request in flight waits (BENCHMARKS.md, benchmark 1). Frozen, a full
    collection walks only what requests made since.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)


def run_server(core: Core) -> int:
    """Serve until stopped: HTTP on HOST:PORT, and Slack's Socket Mode if SLACK_APP_TOKEN is set."""
    settings = core.settings
    server = build_server(core)
    app = make_web_app(server)
    if server.slack_app is not None and settings.slack_app_token:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(server.slack_app, settings.slack_app_token)

        async def socket_mode(app: web.Application) -> AsyncIterator[None]:
            await handler.connect_async()
            yield
            await handler.close_async()

        app.cleanup_ctx.append(socket_mode)
    mode = "Socket Mode" if settings.slack_app_token else "POST /slack/events"
    print(
        f"Serving on http://{settings.host}:{settings.port} "
        f"(Slack: {mode if server.slack_app else 'off'}); Ctrl-C to stop."
    )
    tune_garbage_collector()
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_seconds,
        access_log=None,  # requests are logged by the middleware, without query strings
    )
    return 0
