"""The bot's real aiohttp app on 127.0.0.1 with Slack on, against FakeSlackApi, for the hostile,
who-may-act, replay and load tests: signed requests in, every table's row count out.

Every person in examples/directory.yaml is a Slack user here, with an id made from their
directory id (`slack_id_of`), so any of them can press any button.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import EXAMPLE_CONFIG
from fakes.slack_api import FakeSlackApi
from fakes.slack_signing import (
    block_actions_body,
    block_actions_payload,
    signed_headers,
    slash_command_body,
    view_submission_body,
    view_submission_payload,
)
from sqlalchemy import func, select

from bot.app import Core, build_core
from bot.clock import Clock
from bot.config import Settings, load_partnership
from bot.disputes import Dispute
from bot.web import Server, build_server, make_web_app
from store.models import Base

SECRET = "test-signing-secret"
TOKEN = "xoxb-test"
STRANGER = "U0STRANGER"
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def slack_id_of(person_id: str) -> str:
    """The Slack user id the fake workspace gives a directory person (amara.okafor: UAMARAOKAFOR)."""
    return "U" + re.sub(r"[^a-z0-9]", "", person_id).upper()[:20]


def example_people() -> list[str]:
    """Every person id in the example directory, in file order."""
    return list(load_partnership(EXAMPLE_CONFIG).directory.people)


@dataclass
class SlackBot:
    """The running bot, its fake Slack, and signed requests into it."""

    api: FakeSlackApi
    client: TestClient[Any, Any]
    core: Core
    server: Server

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None, *, settle: bool = True
    ) -> Any:
        """Post a request; with `settle`, also wait for the work its listener does after acking."""
        response = await self.client.post(
            "/slack/events", data=body, headers=headers or signed_headers(SECRET, body)
        )
        if settle:
            await self.server.budget.settle()
        return response

    async def command(
        self, text: str = "", user: str = "", trigger: str = "T1", *, settle: bool = True
    ) -> Any:
        """`/escalate text` from `user`, with a response_url the fake Slack records answers on."""
        body = slash_command_body(
            text=text, user_id=user, trigger_id=trigger, response_url=self.api.response_url()
        )
        return await self.post(body, settle=settle)

    async def submit(
        self, callback_id: str, values: dict[str, Any], *, settle: bool = True, **kw: Any
    ) -> Any:
        return await self.post(
            view_submission_body(view_submission_payload(callback_id, values, **kw)),
            settle=settle,
        )

    async def click(self, action_id: str, value: str | None, user: str, **kw: Any) -> Any:
        return await self.post(
            block_actions_body(block_actions_payload(action_id, value, user_id=user, **kw))
        )

    async def deliver(self) -> None:
        """Let the work the bot started after its acks finish, then send what is queued."""
        await self.server.settle()
        assert self.server.dispatcher is not None
        await self.server.dispatcher.run_once()

    def disputes(self) -> list[Dispute]:
        with self.core.store.unit() as session:
            return self.core.store.open_disputes(session, self.core.partnership.id)

    def row_counts(self) -> dict[str, int]:
        """How many rows every table holds: the store's footprint, to show nothing was written."""
        with self.core.store.unit() as session:
            return {
                table.name: session.execute(select(func.count()).select_from(table)).scalar_one()
                for table in Base.metadata.sorted_tables
            }


def radio(value: str) -> dict[str, Any]:
    return {"value": {"type": "radio_buttons", "selected_option": {"value": value}}}


def select_(value: str | None) -> dict[str, Any]:
    option = {"value": value} if value else None
    return {"value": {"type": "static_select", "selected_option": option}}


def text(value: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def day(value: str) -> dict[str, Any]:
    return {"value": {"type": "datepicker", "selected_date": value}}


def intake_values(**overrides: dict[str, Any]) -> dict[str, Any]:
    """A complete, valid intake modal: Amara (children's social care) against the hospital trust."""
    values = {
        "immediate_risk": radio("no"),
        "scope": select_("disagreement"),
        "other_agency": select_("rwt"),
        "other_person": select_("ben.carter"),
        "category": select_("threshold"),
        "case_ref": text("CS-204611"),
        "decision": text("The referral was closed with no further action."),
        "reasons": text("Three missed health appointments and a new injury."),
        "outcome_sought": text("A strategy discussion."),
        "disagreement_date": day("2026-11-26"),
    }
    values.update(overrides)
    return values


def view_of(call: dict[str, Any]) -> dict[str, Any]:
    """The view argument of a recorded views.* call, as a dict."""
    view = call["view"]
    return view if isinstance(view, dict) else json.loads(view)


@asynccontextmanager
async def slack_bot(
    tmp_path: Path,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    database_url: str | None = None,
    extra_people: list[dict[str, Any]] | None = None,
    **settings: Any,
) -> AsyncIterator[SlackBot]:
    """The bot serving /slack/events on 127.0.0.1, the example partnership (with `extra_people`
    added to its directory), the fake Slack API. `settings` override the bot's Settings.

    The fake's record of malformed Web API calls must be empty when the block ends.
    """
    for name in PROXIES:  # slack_sdk would send even 127.0.0.1 through a proxy (DESIGN.md)
        monkeypatch.delenv(name, raising=False)
    cfg = tmp_path / "cfg"
    if not cfg.exists():
        shutil.copytree(EXAMPLE_CONFIG.parent, cfg)
        config = cfg / "partnership.yaml"
        config.write_text(
            config.read_text()
            .replace("disputes: {slack: null", "disputes: {slack: C0DISPUTES")
            .replace("oversight: {slack: null", "oversight: {slack: C0OVERSIGHT")
        )
        if extra_people:
            with (cfg / "directory.yaml").open("a", encoding="utf-8") as directory:
                for person in extra_people:
                    directory.write(f"  - {json.dumps(person)}\n")
    async with FakeSlackApi(token=TOKEN) as api:
        for person in load_partnership(cfg / "partnership.yaml").directory:
            api.add_user(slack_id_of(person.id), person.email or "", person.name)
        api.add_user(STRANGER, "someone@elsewhere.example", "Sam Stranger")
        core = build_core(
            Settings(
                database_url=database_url or f"sqlite:///{tmp_path}/slack.db",
                escalation_config=str(cfg / "partnership.yaml"),
                slack_bot_token=TOKEN,
                slack_signing_secret=SECRET,
                slack_api_url=api.base_url,
                **settings,
            ),
            clock=clock,
        )
        try:
            server = build_server(core, tick=False)
            async with TestClient(TestServer(make_web_app(server), host="127.0.0.1")) as client:
                yield SlackBot(api, client, core, server)
        finally:
            core.store.dispose()
        assert api.violations == [], api.violations
