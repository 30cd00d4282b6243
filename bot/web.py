"""The one aiohttp server: Slack's HTTP endpoint, the health check, and the tick.

Bolt has no handler for an existing aiohttp app (DESIGN.md), so `/slack/events` converts
requests with Bolt's own helpers around `AsyncApp.async_dispatch`. The timekeeper starts with
the server (the scheduler must start inside the running loop) and stops with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import Platform
from bot.adapters.slack.app import Budget, build_slack_app
from bot.adapters.slack.platform import SlackPlatform
from bot.app import Core
from bot.outbox import Dispatcher
from bot.scheduler import Timekeeper

log = logging.getLogger(__name__)


@dataclass
class Server:
    """What the web application runs: the platforms, the outbox and the tick."""

    core: Core
    platforms: list[Platform] = field(default_factory=list)
    slack_app: AsyncApp | None = None
    budget: Budget = field(default_factory=lambda: Budget(2.0))
    dispatcher: Dispatcher | None = None
    timekeeper: Timekeeper | None = None
    _kicks: set[asyncio.Task[object]] = field(default_factory=set)

    def kick(self) -> None:
        """Send what was just queued now rather than at the next tick."""
        if self.dispatcher is None:
            return
        task = asyncio.get_running_loop().create_task(self.dispatcher.run_once())
        self._kicks.add(task)  # keep a reference until it is done (asyncio's advice)
        task.add_done_callback(self._kicks.discard)

    async def settle(self) -> None:
        """Wait for listeners still at work after their ack, and the sends kicks started."""
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
    # No retries inside the client: a retried POST after a dropped connection can post twice.
    # The outbox owns retries (and knows how to check what already went).
    return AsyncWebClient(token=settings.slack_bot_token, base_url=base, retry_handlers=[])


def build_server(core: Core, *, tick: bool = True) -> Server:
    """Wire the enabled platforms, the outbox and the tick around the core."""
    settings = core.settings
    server = Server(core, budget=Budget(settings.slack_ack_budget))
    if settings.slack_enabled:
        client = slack_client(core)
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
        )
    server.dispatcher = core.dispatcher(server.platforms)
    if tick:
        server.timekeeper = Timekeeper(core.service, server.dispatcher, settings.tick_seconds)
    return server


def make_web_app(server: Server) -> web.Application:
    """The aiohttp application: /slack/events, /healthz, and the tick's lifetime."""
    app = web.Application(client_max_size=1024 * 1024)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)

    if server.slack_app is not None:
        slack_app = server.slack_app

        async def slack_events(request: web.Request) -> web.Response:
            bolt_response = await slack_app.async_dispatch(await to_bolt_request(request))
            return await to_aiohttp_response(bolt_response)

        app.router.add_post("/slack/events", slack_events)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        if server.timekeeper is not None:
            server.timekeeper.start()
        yield
        if server.timekeeper is not None:
            server.timekeeper.stop()
        await server.settle()

    app.cleanup_ctx.append(lifetime)
    return app


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
    web.run_app(app, host=settings.host, port=settings.port, print=None)
    return 0
