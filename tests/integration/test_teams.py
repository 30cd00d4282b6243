"""Teams end to end: real Bot Framework activities posted over HTTP into the running aiohttp
app, signed as the Bot Framework service signs them, against a fake Bot Connector on 127.0.0.1
that records what the bot sends and checks every card against the Adaptive Card 1.5 schema.

No request goes to a Microsoft host: the bot's token checks read the OpenID keys from the fake,
its own token comes from a fake credentials factory, and `no_outside_calls` fails any name
lookup other than 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from botframework.connector.auth import ChannelValidation, ServiceClientCredentialsFactory
from conftest import EXAMPLE_CONFIG, wait_until
from fakes.bot_connector import BotConnectorRecord, FakeBotConnector
from fakes.slack_api import FakeSlackApi
from fakes.slack_signing import signed_headers, view_submission_body, view_submission_payload
from msrest.authentication import Authentication
from sqlalchemy import event, select

from bot.adapters.teams.clients import KeptClientsAuthentication
from bot.adapters.teams.reach import still_to_open
from bot.adapters.teams.turns import Turns
from bot.app import Core, build_core
from bot.clock import FakeClock
from bot.config import Settings
from bot.disputes import Action, Dispute
from bot.messages import Message, Recipient
from bot.web import Server, build_server, make_web_app, stop
from store import conversation_refs as refs
from store.models import ConversationRefRow, OutboxRow

APP_ID = "5f0c1f7e-6b1d-4c2a-9e3f-00000000e5c1"
TENANT = "0d7a9e52-3c41-4b8e-a1f2-00000000b0a7"
BOT = {"id": f"28:{APP_ID}", "name": "Escalation bot"}
TEAM = "19:partnership-team@thread.tacv2"
DISPUTES = "19:disputes-channel@thread.tacv2"
OVERSIGHT = "19:oversight-channel@thread.tacv2"
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
LOCAL = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class User:
    """A Teams user (fictional)."""

    key: str
    name: str
    email: str

    @property
    def id(self) -> str:
        return f"29:{self.key}"

    @property
    def aad(self) -> str:
        return f"aad-{self.key}"

    @property
    def chat(self) -> str:
        """Their personal chat with the bot."""
        return f"a:personal-{self.id}"


AMARA = User("amara", "Amara Okafor", "amara.okafor@example.org")
BEN = User("ben", "Ben Carter", "ben.carter@example.org")
DAN = User("dan", "Dan Fielding", "dan.fielding@example.org")
OLIVIA = User("olivia", "Olivia Brandt", "olivia.brandt@example.org")
STRANGER = User("stranger", "Sam Stranger", "sam.stranger@elsewhere.example")

INTAKE = {
    "immediate_risk": "no",
    "scope": "disagreement",
    "other_agency": "rwt",
    "other_person": "ben.carter",
    "category": "threshold",
    "case_ref": "CS-204611",
    "decision": "The referral was closed with no further action.",
    "reasons": (
        "Missed appointments [click here](https://evil.example/x) <at>Olivia Brandt</at> "
        "www.evil.example {{DATE(2026-01-01T00:00:00Z, SHORT)}}"
    ),
    "outcome_sought": "A strategy discussion.",
    "disagreement_date": "2026-11-26",
}


class _Token(Authentication):  # type: ignore[misc]
    """The bot's own token, without asking Microsoft's sign-in service for one."""

    def __init__(self, token: str) -> None:
        self.token = token

    def signed_session(self, session: Any = None) -> Any:
        session = super().signed_session(session)
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session


class FakeCredentials(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """Credentials for the bot's app id only, with a fixed token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == APP_ID

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Authentication:
        assert app_id == APP_ID
        return _Token(self.token)


@pytest.fixture
def no_outside_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and list) every name lookup that is not this machine: no Microsoft hosts."""
    attempts: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOCAL:
            attempts.append(name)
            raise OSError(f"test guard: no outside calls ({name})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield attempts
    assert attempts == [], f"the bot tried to reach {attempts}"


_ids = itertools.count(1)


def activity(
    user: User,
    service_url: str,
    *,
    text: str | None = None,
    value: dict[str, Any] | None = None,
    reply_to: str | None = None,
    conversation: str | None = None,
    channel: str | None = None,
    kind: str = "message",
    members_added: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An activity as Teams sends it: from a user, in their personal chat or in a channel."""
    activity_id = f"1700000{next(_ids):06d}"
    data: dict[str, Any] = {
        "type": kind,
        "id": activity_id,
        "timestamp": "2026-11-26T10:00:00.000Z",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": user.id, "name": user.name, "aadObjectId": user.aad},
        "recipient": BOT,
        "locale": "en-GB",
        "channelData": {"tenant": {"id": TENANT}},
    }
    if channel is not None:
        data["conversation"] = {
            "id": conversation or f"{channel};messageid={activity_id}",
            "conversationType": "channel",
            "isGroup": True,
            "tenantId": TENANT,
        }
        data["channelData"].update(channel={"id": channel}, team={"id": TEAM})
    else:
        data["conversation"] = {
            "id": conversation or user.chat,
            "conversationType": "personal",
            "tenantId": TENANT,
        }
    if text is not None:
        data["text"] = text
        if channel is not None and "<at>" in text:
            data["entities"] = [
                {"type": "mention", "text": f"<at>{BOT['name']}</at>", "mentioned": BOT}
            ]
    if value is not None:
        data["value"] = value
    if reply_to is not None:
        data["replyToId"] = reply_to
    if members_added is not None:
        data["membersAdded"] = members_added
    return data


@dataclass
class Teams:
    """The running bot, its fake Bot Connector, and ways to post activities to it."""

    fake: FakeBotConnector
    client: TestClient[Any, Any]
    core: Core
    server: Server

    async def post(self, body: dict[str, Any], *, token: str | None = "valid") -> ClientResponse:
        headers = {}
        if token == "valid":
            headers["Authorization"] = f"Bearer {self.fake.token()}"
        elif token is not None:
            headers["Authorization"] = token
        response = await self.client.post("/api/messages", json=body, headers=headers)
        # A message is answered before its turn runs (bot/adapters/teams/turns.py): wait for
        # the turn, so that what follows sees what it did, and fail on one that escaped on_error.
        turns = self.turns
        escaped = turns.escaped
        await turns.settle()
        assert turns.escaped == escaped, "a Teams turn failed after its activity was answered"
        return response

    @property
    def turns(self) -> Turns:
        assert self.server.teams is not None and self.server.teams.turns is not None
        return self.server.teams.turns

    async def say(self, user: User, text: str, **kw: Any) -> ClientResponse:
        response = await self.post(activity(user, self.fake.service_url, text=text, **kw))
        assert response.status == 202, await response.text()
        return response

    async def press(
        self, user: User, card: BotConnectorRecord, data: dict[str, Any], **values: Any
    ) -> ClientResponse:
        """Press an Action.Submit on a card: its data and the inputs' values, as Teams sends them."""
        body = activity(
            user,
            self.fake.service_url,
            value={**data, **values},
            reply_to=card.activity_id,
            conversation=card.conversation_id,
        )
        response = await self.post(body)
        assert response.status == 202, await response.text()
        return response

    async def deliver(self) -> None:
        """Let the sends the bot started finish, then send anything still queued."""
        await self.server.settle()
        assert self.server.dispatcher is not None
        await self.server.dispatcher.run_once()

    def disputes(self) -> list[Dispute]:
        with self.core.store.unit() as session:
            return self.core.store.open_disputes(session, self.core.partnership.id)

    def events(self, ref: str) -> list[str]:
        with self.core.store.unit() as session:
            return [e.type for e in self.core.store.events(session, ref)]

    def chat(self, user: User) -> list[BotConnectorRecord]:
        """What the bot posted in the user's personal chat."""
        return self.fake.posts(user.chat)

    def now(self, record: BotConnectorRecord) -> BotConnectorRecord:
        """A card as it shows now (after any updates in place)."""
        latest = self.fake.latest(record.conversation_id, record.activity_id)
        assert latest is not None
        return latest


def _config(tmp_path: Path, *, slack: bool = False, ben_teams_id: bool = False) -> Path:
    shutil.copytree(EXAMPLE_CONFIG.parent, tmp_path / "cfg")
    config = tmp_path / "cfg" / "partnership.yaml"
    disputes_slack = "C0DISPUTES" if slack else "null"
    oversight_slack = "C0OVERSIGHT" if slack else "null"
    config.write_text(
        config.read_text()
        .replace(
            "disputes: {slack: null, teams: null}",
            f'disputes: {{slack: {disputes_slack}, teams: "{DISPUTES}"}}',
        )
        .replace(
            "oversight: {slack: null, teams: null}",
            f'oversight: {{slack: {oversight_slack}, teams: "{OVERSIGHT}"}}',
        )
    )
    if ben_teams_id:
        directory = tmp_path / "cfg" / "directory.yaml"
        directory.write_text(
            directory.read_text().replace(
                "email: ben.carter@example.org}",
                f"email: ben.carter@example.org, teams_id: {BEN.aad}}}",
            )
        )
    return config


@asynccontextmanager
async def running(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    slack_api: FakeSlackApi | None = None,
    ben_teams_id: bool = False,
) -> AsyncIterator[Teams]:
    for name in PROXIES:
        monkeypatch.delenv(name, raising=False)
    async with FakeBotConnector(app_id=APP_ID) as fake:
        monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", fake.openid_url)
        for user in (AMARA, BEN, DAN, OLIVIA, STRANGER):
            fake.add_member(user.id, user.aad, user.name, user.email)
        config = _config(tmp_path, slack=slack_api is not None, ben_teams_id=ben_teams_id)
        slack: dict[str, Any] = {}
        if slack_api is not None:
            slack = {
                "slack_bot_token": slack_api.token,
                "slack_signing_secret": SLACK_SECRET,
                "slack_api_url": slack_api.base_url,
            }
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/teams.db",
            escalation_config=str(config),
            microsoft_app_id=APP_ID,
            microsoft_app_password="not-used-by-the-fake-credentials",
            microsoft_app_tenant_id=TENANT,
            **slack,
        )
        core = build_core(settings, clock=clock)
        server = build_server(core, tick=False, teams_credentials=FakeCredentials(fake.bot_token))
        test_server = TestServer(make_web_app(server), host="127.0.0.1")
        try:
            async with TestClient(test_server) as client:
                yield Teams(fake, client, core, server)
        finally:
            core.store.dispose()
        assert fake.violations == [], fake.violations


SLACK_SECRET = "test-signing-secret"


@pytest.fixture
async def teams(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, no_outside_calls: list[str]
) -> AsyncIterator[Teams]:
    async with running(tmp_path, clock, monkeypatch) as t:
        yield t


# --- The endpoint refuses what the Bot Framework service did not sign --------------------------


async def test_an_activity_without_a_valid_token_is_refused(teams: Teams) -> None:
    body = activity(AMARA, teams.fake.service_url, text="escalate")
    refused = {
        "no token": None,
        "not a token": "Bearer not-a-token",
        "not bearer": f"Basic {teams.fake.token()}",
        "signed by someone else": f"Bearer {teams.fake.token(signed_by_someone_else=True)}",
        "for another bot": f"Bearer {teams.fake.token(audience='another-app-id')}",
        "expired": f"Bearer {teams.fake.token(expires_in=-3600)}",
        "another issuer": f"Bearer {teams.fake.token(issuer='https://issuer.example')}",
        "for another service URL": f"Bearer {teams.fake.token(service_url='http://127.0.0.1:9/')}",
    }
    for why, header in refused.items():
        response = await teams.post(body, token=header)
        assert response.status == 401, why
    assert teams.fake.sent() == []
    with teams.core.store.unit() as session:
        assert session.execute(select(ConversationRefRow)).first() is None
    # The same activity, signed by the Bot Framework service, is taken.
    assert (await teams.post(body)).status == 202
    assert teams.chat(AMARA)


async def test_a_body_that_is_not_an_activity_is_a_bad_request(teams: Teams) -> None:
    token = {"Authorization": f"Bearer {teams.fake.token()}"}
    assert (await teams.client.post("/api/messages", data="{", headers=token)).status == 415
    response = await teams.client.post(
        "/api/messages", data="{", headers={**token, "Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (
        await teams.client.post("/api/messages", json={"text": "hi"}, headers=token)
    ).status == 400
    malformed = {"type": "message", "timestamp": "not a date", "from": "not an account"}
    response = await teams.client.post("/api/messages", json=malformed, headers=token)
    assert response.status == 400
    assert teams.fake.sent() == []


# --- A message is answered before its turn runs ---------------------------------------------------


async def raw_post(teams: Teams, body: dict[str, Any]) -> int:
    """Post an activity and return its status without waiting for its turn (Teams.post does)."""
    headers = {"Authorization": f"Bearer {teams.fake.token()}"}
    response = await teams.client.post("/api/messages", json=body, headers=headers)
    return response.status


async def test_a_message_is_answered_before_its_reply_is_sent(teams: Teams) -> None:
    # The Bot Framework service times out at 10-15 s; the answer must not wait for the work.
    teams.fake.hold()
    try:
        status = await raw_post(teams, activity(AMARA, teams.fake.service_url, text="help"))
        assert status == 202
        await wait_until(lambda: teams.fake.held, "the reply to reach the connector")
        assert teams.chat(AMARA) == []  # answered while the reply was still on its way
    finally:
        teams.fake.release()
    await teams.turns.settle()
    (reply,) = teams.chat(AMARA)
    assert "escalate list" in reply.shown


async def test_one_persons_messages_are_handled_in_the_order_sent(teams: Teams) -> None:
    first = activity(AMARA, teams.fake.service_url, text="help")
    second = activity(AMARA, teams.fake.service_url, text="list")
    other = activity(BEN, teams.fake.service_url, text="help")
    teams.fake.hold()
    try:
        for body in (first, second, other):
            assert await raw_post(teams, body) == 202
        # Ben's turn goes ahead with Amara's first; her second waits for her first.
        await wait_until(lambda: len(teams.fake.held) == 2, "two replies at the connector")
        assert sorted(teams.fake.held) == sorted(
            [f"POST {AMARA.chat}/{first['id']}", f"POST {BEN.chat}/{other['id']}"]
        )
    finally:
        teams.fake.release()
    await teams.turns.settle()
    assert [r.reply_to for r in teams.chat(AMARA)] == [first["id"], second["id"]]


async def test_shutdown_waits_for_the_turns_of_messages_already_answered(teams: Teams) -> None:
    teams.fake.hold()
    try:
        await raw_post(teams, activity(AMARA, teams.fake.service_url, text="help"))
        await wait_until(lambda: teams.fake.held, "the reply to reach the connector")
        stopping = asyncio.create_task(stop(teams.server))
        done, _ = await asyncio.wait({stopping}, timeout=0.5)
        assert not done, "shutdown did not wait for the turn in progress"
    finally:
        teams.fake.release()
    await stopping
    assert len(teams.chat(AMARA)) == 1 and not teams.turns.running


async def test_an_invoke_is_still_answered_with_its_result(teams: Teams) -> None:
    # An invoke's answer is its result: it cannot be given before the turn.
    body = activity(AMARA, teams.fake.service_url, kind="invoke")
    body["name"] = "adaptiveCard/action"
    body["value"] = {"action": {"type": "Action.Execute", "verb": "approveAll", "data": {}}}
    headers = {"Authorization": f"Bearer {teams.fake.token()}"}
    response = await teams.client.post("/api/messages", json=body, headers=headers)
    assert response.status == 200 and "out of date" in (await response.json())["value"]
    assert not teams.turns.running


# --- Conversation references --------------------------------------------------------------------


async def test_every_turn_stores_where_the_person_and_channel_can_be_reached(teams: Teams) -> None:
    await teams.say(AMARA, "help")
    await teams.say(DAN, "<at>Escalation bot</at> help", channel=DISPUTES)
    with teams.core.store.unit() as session:
        rows = {r.key: r for r in session.execute(select(ConversationRefRow)).scalars()}
    amara = rows[f"user:{AMARA.aad}"]
    assert amara.person_id == "amara.okafor"  # identified by her email, once
    assert amara.reference["conversation"]["id"] == AMARA.chat
    assert amara.reference["serviceUrl"] == teams.fake.service_url
    assert "activityId" not in amara.reference
    channel = rows[f"channel:{DISPUTES}"]
    assert channel.reference["conversation"]["id"] == DISPUTES  # not the thread it came from
    assert rows[f"member:{DAN.aad}"].person_id == "dan.fielding"
    assert teams.core.service.identify(teams_id=AMARA.aad) is not None
    # help answers in a card, in the conversation asked.
    (answer,) = teams.chat(AMARA)
    assert "escalate list" in answer.shown


def stored(teams: Teams, key: str) -> ConversationRefRow:
    with teams.core.store.unit() as session:
        row = session.execute(
            select(ConversationRefRow).where(ConversationRefRow.key == key)
        ).scalar_one()
        session.expunge(row)
        return row


async def test_an_unchanged_reference_is_not_written_again_until_an_hour_has_passed(
    teams: Teams, clock: FakeClock
) -> None:
    await teams.say(AMARA, "help")
    first = stored(teams, f"user:{AMARA.aad}")
    clock.advance(timedelta(minutes=50))
    await teams.say(AMARA, "help")
    assert stored(teams, f"user:{AMARA.aad}").updated_at == first.updated_at
    clock.advance(timedelta(minutes=20))
    await teams.say(AMARA, "help")
    assert stored(teams, f"user:{AMARA.aad}").updated_at > first.updated_at
    assert len(teams.chat(AMARA)) == 3  # every turn was answered all the same


async def test_a_turn_from_the_same_fields_does_not_rebuild_the_reference(
    teams: Teams, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # msrest's serialisation of the reference (a quarter of a millisecond) is skipped when the
    # activity's fields are those last saved; a change, or the hourly refresh, still does it.
    import bot.adapters.teams.bot as teams_bot

    built: list[dict[str, Any]] = []
    real = teams_bot.from_reference

    def counted(reference: Any) -> dict[str, Any]:
        built.append(data := real(reference))
        return data

    monkeypatch.setattr(teams_bot, "from_reference", counted)
    await teams.say(AMARA, "help")
    await teams.say(AMARA, "escalate list")
    assert len(built) == 1
    await teams.say(AMARA, "help", conversation="a:personal-29:amara-on-her-phone")
    assert len(built) == 2
    clock.advance(timedelta(minutes=61))
    await teams.say(AMARA, "help", conversation="a:personal-29:amara-on-her-phone")
    assert len(built) == 3
    assert len(teams.chat(AMARA)) == 2  # every turn answered all the same
    assert len(teams.fake.posts("a:personal-29:amara-on-her-phone")) == 2


async def test_a_changed_reference_is_written_at_once(teams: Teams, clock: FakeClock) -> None:
    await teams.say(AMARA, "help")
    clock.advance(timedelta(minutes=1))
    await teams.say(AMARA, "help", conversation="a:personal-29:amara-on-her-phone")
    row = stored(teams, f"user:{AMARA.aad}")
    assert row.reference["conversation"]["id"] == "a:personal-29:amara-on-her-phone"
    assert row.person_id == "amara.okafor"
    # Met again in a channel, in another thread: the member reference follows her there.
    await teams.say(AMARA, "<at>Escalation bot</at> help", channel=DISPUTES)
    await teams.say(AMARA, "<at>Escalation bot</at> help", channel=DISPUTES)
    threads = [
        r.conversation_id for r in teams.fake.posts() if r.conversation_id.startswith(DISPUTES)
    ]
    assert stored(teams, f"member:{AMARA.aad}").reference["conversation"]["id"] == threads[-1]


async def test_whoever_the_outbox_could_not_reach_is_looked_for_again_and_found_once_met(
    teams_ben_unmet: Teams,
) -> None:
    teams = teams_ben_unmet
    platform = next(p for p in teams.server.platforms if p.name == "teams")
    to_ben = Message(Recipient.person("ben.carter"), "For Ben")
    assert platform.can_reach(to_ben) is False
    assert platform.can_reach(to_ben) is False
    await teams.say(BEN, "hello")
    assert platform.can_reach(to_ben) is True
    # Once found, never lost (references are never deleted): the store is not read again.
    statements: list[str] = []
    engine = teams.core.store.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert platform.can_reach(to_ben) is True
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []


async def test_sending_to_a_person_or_channel_reads_their_reference_without_the_write_lock(
    teams: Teams,
) -> None:
    # On SQLite a writing unit queues for the one write lock behind every click and tick; the
    # reference a send needs is only read.
    await teams.say(BEN, "hello")
    await teams.say(AMARA, "<at>Escalation bot</at> help", channel=DISPUTES)
    platform = next(p for p in teams.server.platforms if p.name == "teams")
    statements: list[str] = []
    engine = teams.core.store.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        await platform.send(Message(Recipient.person("ben.carter"), "For Ben"), thread_id=None)
        await platform.send(Message(Recipient.channel(), "For the channel"), thread_id=None)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert any("conversation_refs" in s for s in statements)  # they were read
    assert not [s for s in statements if s.startswith(("BEGIN IMMEDIATE", "INSERT", "UPDATE"))]
    assert teams.fake.posts(BEN.chat)[-1].activity["summary"] == "For Ben"


async def test_a_personal_install_is_welcomed_and_remembered(teams: Teams) -> None:
    body = activity(OLIVIA, teams.fake.service_url, kind="conversationUpdate", members_added=[BOT])
    assert (await teams.post(body)).status == 202
    (welcome,) = teams.chat(OLIVIA)
    assert "Type escalate" in welcome.shown
    with teams.core.store.unit() as session:
        assert refs.reference(session, "teams", f"user:{OLIVIA.aad}") is not None


# --- The intake -----------------------------------------------------------------------------------


async def escalate(teams: Teams, user: User = AMARA) -> BotConnectorRecord:
    await teams.say(user, "escalate")
    form = teams.chat(user)[-1]
    assert form.submit_data()[0]["form"] == "intake"
    return form


async def test_escalate_in_a_personal_chat_sends_the_intake_as_a_card_form(teams: Teams) -> None:
    form = await escalate(teams)
    inputs = form.inputs()
    assert list(inputs)[:3] == ["immediate_risk", "scope", "other_agency"]
    assert inputs["immediate_risk"]["type"] == "Input.ChoiceSet"
    assert inputs["immediate_risk"]["style"] == "expanded"
    assert inputs["case_ref"]["type"] == "Input.Text" and inputs["case_ref"]["maxLength"] == 40
    assert inputs["reasons"]["isMultiline"] is True and inputs["reasons"]["maxLength"] == 3000
    assert inputs["disagreement_date"] == {
        **inputs["disagreement_date"],
        "type": "Input.Date",
        "value": "2026-11-26",
    }
    # Amara is known by her email: she is not asked who she is.
    assert "own_agency" not in inputs and "own_name" not in inputs
    assert form.reply_to is not None  # a reply to what she typed


async def test_someone_the_directory_does_not_know_is_asked_who_they_are(teams: Teams) -> None:
    form = await escalate(teams, STRANGER)
    inputs = form.inputs()
    assert {"own_name", "own_agency", "own_manager"} <= set(inputs)
    assert inputs["own_name"]["value"] == STRANGER.name


async def test_invalid_answers_come_back_on_the_card_with_the_field_named(teams: Teams) -> None:
    form = await escalate(teams)
    answers = {
        **INTAKE,
        "disagreement_date": "2030-01-01",
        "reasons": "x" * 5000,
        "other_agency": "not-an-agency",
    }
    await teams.press(AMARA, form, form.submit_data()[0], **answers)
    assert teams.disputes() == []
    (update,) = teams.fake.updates(AMARA.chat)
    assert update.activity_id == form.activity_id  # the same card, updated in place
    body = update.card["body"]
    errors = {
        b["id"].removeprefix("error-"): b["text"]
        for b in body
        if b.get("id", "").startswith("error-")
    }
    assert set(errors) == {"disagreement_date", "reasons", "other_agency"}
    assert "When did the disagreement arise" in errors["disagreement_date"]
    assert "future" in errors["disagreement_date"]
    assert "5,000 characters" in errors["reasons"]
    assert "not one of the options" in errors["other_agency"]
    # Each error sits right under its field, and what was typed is still there to fix.
    ids = [b.get("id") for b in body]
    assert ids.index("error-reasons") == ids.index("reasons") + 1
    assert update.inputs()["case_ref"]["value"] == "CS-204611"
    assert update.inputs()["reasons"]["value"] == "x" * 3000


async def test_out_of_scope_says_which_procedure_applies(teams: Teams) -> None:
    form = await escalate(teams)
    await teams.press(AMARA, form, form.submit_data()[0], **{**INTAKE, "scope": "complaint"})
    (update,) = teams.fake.updates(AMARA.chat)
    (error,) = [b for b in update.card["body"] if b.get("id") == "error-scope"]
    assert "complaint" in error["text"].lower()
    assert teams.disputes() == []


async def test_immediate_risk_pings_the_safeguarding_lead_at_once(teams: Teams) -> None:
    await teams.say(OLIVIA, "hello")  # the lead has opened the bot
    form = await escalate(teams)
    # Only the risk answered: the card comes back, and the lead is told now, once.
    await teams.press(AMARA, form, form.submit_data()[0], immediate_risk="yes")
    (update,) = teams.fake.updates(AMARA.chat)
    assert "Act now" in update.shown and "Olivia Brandt" in update.shown
    assert update.submit_data()[0]["risk_alerted"] is True
    await teams.deliver()
    urgent = [r for r in teams.chat(OLIVIA) if "URGENT" in r.shown]
    assert len(urgent) == 1
    await teams.press(AMARA, update, update.submit_data()[0], immediate_risk="yes")
    await teams.deliver()
    assert len([r for r in teams.chat(OLIVIA) if "URGENT" in r.shown]) == 1


async def log_dispute(teams: Teams) -> Dispute:
    """Ben has opened the bot; Amara logs a disagreement with him from Teams."""
    await teams.say(BEN, "hello")
    form = await escalate(teams)
    await teams.press(AMARA, form, form.submit_data()[0], **INTAKE)
    (dispute,) = teams.disputes()
    await teams.deliver()
    return dispute


async def test_a_valid_submission_logs_the_dispute_and_pings_the_other_practitioner(
    teams: Teams,
) -> None:
    dispute = await log_dispute(teams)
    form = teams.chat(AMARA)[0]
    logged = teams.now(form)
    assert logged.method == "PUT" and f"Logged as {dispute.ref}" in logged.shown
    assert "Logged by Amara Okafor at Thu 26 Nov, 10:00" in logged.shown
    assert "actions" not in logged.card  # nothing left to press on a logged form

    (ping,) = [r for r in teams.chat(BEN) if dispute.ref in r.shown]
    assert "CS-204611" in ping.shown
    assert {"action": "acknowledge", "ref": dispute.ref} in ping.submit_data()
    # What Amara typed is shown as text: no link, no mention, no card function.
    reasons = next(f["value"] for f in ping.card["body"][1]["facts"] if f["title"] == "Reasons")
    assert "Missed appointments" in reasons
    assert "](" not in reasons and "<at>" not in reasons and "https://" not in reasons
    assert "www." not in reasons and "{{" not in reasons
    assert "entities" not in ping.card["msteams"]

    (root,) = teams.fake.posts(DISPUTES)  # a new thread in the channel
    assert dispute.ref in root.shown and "Royal Wolverhampton NHS Trust" in root.shown
    assert "CS-204611" not in root.shown and "Missed appointments" not in root.shown
    replies = teams.fake.posts(f"{DISPUTES};messageid={root.activity_id}")
    assert replies and "opened at stage 1" in replies[0].shown
    assert [r for r in teams.chat(AMARA) if "deadlines" in r.shown], "the raiser's deadlines"


async def test_the_same_form_sent_twice_logs_once(teams: Teams) -> None:
    await teams.say(BEN, "hello")
    form = await escalate(teams)
    await teams.press(AMARA, form, form.submit_data()[0], **INTAKE)
    await teams.press(AMARA, form, form.submit_data()[0], **INTAKE)
    assert len(teams.disputes()) == 1


async def test_a_stranger_is_remembered_with_their_teams_id(teams: Teams) -> None:
    form = await escalate(teams, STRANGER)
    answers = {**INTAKE, "own_name": STRANGER.name, "own_agency": "wmp", "own_manager": ""}
    await teams.press(STRANGER, form, form.submit_data()[0], **answers)
    (dispute,) = teams.disputes()
    person = teams.core.service.identify(teams_id=STRANGER.aad)
    assert person is not None and person.id == dispute.details.raised_by
    await teams.say(STRANGER, "escalate list")
    assert dispute.ref in teams.chat(STRANGER)[-1].shown


# --- Buttons ----------------------------------------------------------------------------------------


def ping_for(teams: Teams, user: User, ref: str) -> BotConnectorRecord:
    return next(r for r in teams.chat(user) if ref in r.shown and r.submit_data())


async def test_the_card_pressed_is_updated_before_the_notices_start(teams: Teams) -> None:
    # What the person waits for goes first: the notices the click queued (to Amara, in the
    # channel) are sent only once the card pressed is updated, not alongside it.
    dispute = await log_dispute(teams)
    ping = ping_for(teams, BEN, dispute.ref)
    body = activity(
        BEN,
        teams.fake.service_url,
        value={"action": "acknowledge", "ref": dispute.ref},
        reply_to=ping.activity_id,
        conversation=ping.conversation_id,
    )
    teams.fake.hold()
    try:
        assert await raw_post(teams, body) == 202
        await wait_until(lambda: teams.fake.held, "the card's update to reach the connector")
        assert teams.fake.held == [f"PUT {ping.conversation_id}/{ping.activity_id}"]
        assert not teams.server._kicks, "the notices started before the card was updated"
    finally:
        teams.fake.release()
    await teams.turns.settle()
    await teams.deliver()
    assert any("acknowledged" in r.shown for r in teams.chat(AMARA))


async def test_a_button_acts_and_the_card_updates_in_place_with_who_and_when(
    teams: Teams, clock: FakeClock
) -> None:
    dispute = await log_dispute(teams)
    ping = ping_for(teams, BEN, dispute.ref)
    clock.advance(timedelta(minutes=20))
    await teams.press(BEN, ping, {"action": "acknowledge", "ref": dispute.ref})
    updated = teams.now(ping)
    assert updated.method == "PUT"
    assert "Acknowledged by Ben Carter at Thu 26 Nov, 10:20" in updated.shown
    assert {"action": "acknowledge", "ref": dispute.ref} not in updated.submit_data()
    assert teams.events(dispute.ref).count("Acknowledged") == 1

    # A second press changes nothing, and Ben alone is told why.
    posted = len(teams.chat(BEN))
    await teams.press(BEN, ping, {"action": "acknowledge", "ref": dispute.ref})
    assert "already acknowledged" in teams.chat(BEN)[posted].shown
    assert teams.events(dispute.ref).count("Acknowledged") == 1

    # The other side hears of it; the channel's thread root is updated, not posted again.
    await teams.deliver()
    assert any("acknowledged" in r.shown for r in teams.chat(AMARA))
    (root,) = teams.fake.posts(DISPUTES)
    assert [u.activity_id for u in teams.fake.updates(DISPUTES)] == [root.activity_id]
    in_thread = teams.fake.posts(f"{DISPUTES};messageid={root.activity_id}")
    assert "Acknowledged by the Royal Wolverhampton NHS Trust" in in_thread[-1].shown


async def test_someone_not_allowed_is_refused_privately(teams: Teams) -> None:
    dispute = await log_dispute(teams)
    ping = ping_for(teams, BEN, dispute.ref)
    await teams.say(DAN, "hello")
    body = activity(
        DAN, teams.fake.service_url, value={"action": "acknowledge", "ref": dispute.ref}
    )
    assert (await teams.post(body)).status == 202
    refusal = teams.chat(DAN)[-1]
    assert "can't" in refusal.shown
    assert "Acknowledged" not in teams.events(dispute.ref)
    assert teams.fake.updates(BEN.chat) == [] and teams.now(ping).method == "POST"


async def test_a_button_with_questions_sends_its_form_then_acts(teams: Teams) -> None:
    dispute = await log_dispute(teams)
    ping = ping_for(teams, BEN, dispute.ref)
    await teams.press(BEN, ping, {"action": "add_note", "ref": dispute.ref})
    form = teams.chat(BEN)[-1]
    assert form.inputs()["text"]["isMultiline"] is True
    (data,) = form.submit_data()
    assert data["form"] == "action" and data["origin"] == ping.activity_id

    await teams.press(BEN, form, data, text="")
    errors = [b for b in teams.now(form).card["body"] if b.get("id") == "error-text"]
    assert errors and "What was discussed and agreed?" in errors[0]["text"]
    assert "NoteAdded" not in teams.events(dispute.ref)

    note = "Spoke with Amara; agreed to review the health records."
    await teams.press(BEN, form, data, text=note, with_whom="Amara Okafor")
    assert "NoteAdded" in teams.events(dispute.ref)
    assert "Note added by Ben Carter" in teams.now(form).shown
    assert "Note added by Ben Carter" in teams.now(ping).shown  # the card pressed, too


async def test_view_details_answers_privately_with_the_status(teams: Teams) -> None:
    dispute = await log_dispute(teams)
    ping = ping_for(teams, BEN, dispute.ref)
    await teams.press(BEN, ping, {"action": "view_details", "ref": dispute.ref})
    details = teams.chat(BEN)[-1]
    assert "Case reference" in details.shown and "Due:" in details.shown


async def test_status_asked_in_a_channel_is_answered_in_the_personal_chat(teams: Teams) -> None:
    dispute = await log_dispute(teams)
    await teams.say(BEN, f"<at>Escalation bot</at> escalate status {dispute.ref}", channel=DISPUTES)
    in_channel = [
        r for r in teams.fake.sent() if r.conversation_id.startswith(DISPUTES) and r.reply_to
    ]
    assert in_channel and "personal chat" in in_channel[-1].shown
    assert all(
        "CS-204611" not in r.shown for r in teams.fake.sent() if r.conversation_id.startswith("19:")
    )
    assert "CS-204611" in teams.chat(BEN)[-1].shown


async def test_escalate_in_a_channel_opens_a_personal_chat_for_the_form(teams: Teams) -> None:
    await teams.say(DAN, "<at>Escalation bot</at> escalate", channel=DISPUTES)
    (created,) = teams.fake.created
    assert created["members"][0]["id"] == DAN.id
    assert created["channelData"] == {"tenant": {"id": TENANT}}
    (form,) = teams.chat(DAN)
    assert "immediate_risk" in form.inputs()
    (notice,) = [r for r in teams.fake.sent() if r.conversation_id.startswith(DISPUTES)]
    assert "personal chat" in notice.shown and "immediate_risk" not in notice.shown
    with teams.core.store.unit() as session:
        assert refs.reference(session, "teams", f"user:{DAN.aad}") is not None


# --- Proactive messages ---------------------------------------------------------------------------


def enqueue(teams: Teams, person_id: str, text: str) -> None:
    with teams.core.store.unit() as session:
        teams.core.store.enqueue(
            session,
            [Message(Recipient.person(person_id), text)],
            now=teams.core.service.clock.now(),
        )


async def test_a_proactive_ping_reaches_the_person_through_the_stored_reference(
    teams: Teams,
) -> None:
    await teams.say(BEN, "hello")
    before = len(teams.chat(BEN))
    enqueue(teams, "ben.carter", "Reminder: WST-2026-0042 is due by Fri 27 Nov, 17:00.")
    await teams.deliver()
    (ping,) = teams.chat(BEN)[before:]
    assert ping.reply_to is None  # a new message, not a reply
    assert ping.authorization == f"Bearer {teams.fake.bot_token}"
    assert "WST-2026-0042" in ping.shown
    assert ping.activity["recipient"]["id"] == BEN.id
    assert ping.activity["summary"].startswith("Reminder")


async def test_replies_and_proactive_sends_reuse_one_client_and_its_connections(
    teams: Teams,
) -> None:
    # botbuilder builds a Bot Connector client (and a token client) for every turn and every
    # proactive send; the bot keeps one per service URL, and its connections with it.
    for _ in range(3):
        await teams.say(BEN, "escalate help")
    enqueue(teams, "ben.carter", "Reminder: WST-2026-0042 is due by Fri 27 Nov, 17:00.")
    await teams.deliver()
    assert len(teams.chat(BEN)) == 4
    assert teams.server.teams is not None
    auth = teams.server.teams.adapter.bot_framework_authentication
    assert isinstance(auth, KeptClientsAuthentication)
    assert len(auth.connectors) == 1 and len(auth.token_clients) == 1
    sends = [
        peer
        for peer, (_, path) in zip(teams.fake.peers, teams.fake.requests, strict=True)
        if path.startswith("/v3/conversations")
    ]
    assert len(sends) >= 4
    assert len(set(sends)) < len(sends), "a new connection for every send"


async def test_a_rate_limit_is_honoured_through_the_outbox(teams: Teams, clock: FakeClock) -> None:
    await teams.say(BEN, "hello")
    before = len(teams.chat(BEN))
    teams.fake.fail_next(429, retry_after=45)
    enqueue(teams, "ben.carter", "Reminder: WST-2026-0042 is due soon.")
    await teams.deliver()
    with teams.core.store.unit() as session:
        (row,) = session.execute(select(OutboxRow)).scalars().all()
        assert row.status == "pending" and row.last_error == "Teams rate limit"
        assert (row.next_attempt_at - clock.now()).total_seconds() == 45
    assert teams.chat(BEN)[before:] == []
    clock.advance(timedelta(seconds=45))
    await teams.deliver()
    assert len(teams.chat(BEN)[before:]) == 1


async def test_a_refused_send_is_parked_not_retried(teams: Teams) -> None:
    await teams.say(BEN, "hello")
    teams.fake.fail_next(403)
    enqueue(teams, "ben.carter", "Reminder: WST-2026-0042 is due soon.")
    await teams.deliver()
    with teams.core.store.unit() as session:
        rows = session.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars().all()
        assert rows[0].status == "parked" and "403" in (rows[0].last_error or "")


# --- People the bot has never met ------------------------------------------------------------------


@pytest.fixture
async def teams_ben_unmet(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, no_outside_calls: list[str]
) -> AsyncIterator[Teams]:
    """Ben's Teams id is in the directory, but he has never opened the bot."""
    async with running(tmp_path, clock, monkeypatch, ben_teams_id=True) as t:
        yield t


async def test_someone_never_met_is_named_in_the_channel_and_gets_their_messages_later(
    teams_ben_unmet: Teams,
) -> None:
    teams = teams_ben_unmet
    form = await escalate(teams)
    await teams.press(AMARA, form, form.submit_data()[0], **INTAKE)
    (dispute,) = teams.disputes()
    await teams.deliver()
    # The bot cannot message Ben first: his ping is set aside, not lost.
    assert teams.chat(BEN) == []
    with teams.core.store.unit() as session:
        parked = [
            r
            for r in session.execute(select(OutboxRow)).scalars()
            if r.recipient_id == "ben.carter"
        ]
    assert parked and all(r.status == "parked" for r in parked)

    # The channel post names him, with an @mention that notifies him.
    (root,) = teams.fake.posts(DISPUTES)
    assert "Still to open the escalation bot in Teams" in root.shown
    (mention,) = root.card["msteams"]["entities"]
    assert mention["mentioned"] == {"id": BEN.aad, "name": "Ben Carter"}
    assert mention["text"] in root.shown
    assert "Amara Okafor" not in json.dumps(root.card["msteams"])

    waiting = still_to_open(teams.core.service.directory, teams.core.store, slack_enabled=False)
    assert "ben.carter" in [p.id for p in waiting]
    assert "amara.okafor" not in [p.id for p in waiting]

    # Ben opens the bot: what was set aside for him is sent after all.
    await teams.say(BEN, "hello")
    await teams.deliver()
    assert any(dispute.ref in r.shown and r.submit_data() for r in teams.chat(BEN))
    waiting = still_to_open(teams.core.service.directory, teams.core.store, slack_enabled=False)
    assert "ben.carter" not in [p.id for p in waiting]


async def test_the_digest_lists_who_still_has_to_open_the_bot(teams_ben_unmet: Teams) -> None:
    teams = teams_ben_unmet
    await teams.say(AMARA, "hello")
    with teams.core.store.unit() as session:
        teams.core.store.enqueue(
            session,
            [Message(Recipient.channel("oversight"), "Escalation digest", kind="digest")],
            now=teams.core.service.clock.now(),
        )
    await teams.deliver()
    (digest,) = teams.fake.posts(OVERSIGHT)
    assert "Still to open the escalation bot in Teams" in digest.shown
    assert "Ben Carter" in digest.shown and "and " in digest.shown  # clipped, with a count
    assert {"id": BEN.aad, "name": "Ben Carter"} in [
        e["mentioned"] for e in digest.card["msteams"]["entities"]
    ]


# --- One agency on Slack, the other on Teams ----------------------------------------------------------


AMARA_SLACK = "U0AMARA"


def _radio(value: str) -> dict[str, Any]:
    return {"value": {"type": "radio_buttons", "selected_option": {"value": value}}}


def _select(value: str) -> dict[str, Any]:
    return {"value": {"type": "static_select", "selected_option": {"value": value}}}


def _text(value: str) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


@pytest.fixture
async def both(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, no_outside_calls: list[str]
) -> AsyncIterator[tuple[Teams, FakeSlackApi]]:
    async with FakeSlackApi(token="xoxb-test") as slack:
        slack.add_user(AMARA_SLACK, AMARA.email, AMARA.name)
        async with running(tmp_path, clock, monkeypatch, slack_api=slack) as t:
            yield t, slack
        assert slack.violations == [], slack.violations


async def test_a_dispute_across_slack_and_teams_reaches_each_side_on_its_own_platform(
    both: tuple[Teams, FakeSlackApi],
) -> None:
    teams, slack = both
    await teams.say(BEN, "hello")  # Ben uses Teams; Amara uses Slack
    values = {
        "immediate_risk": _radio("no"),
        "scope": _select("disagreement"),
        "other_agency": _select("rwt"),
        "other_person": _select("ben.carter"),
        "category": _select("threshold"),
        "case_ref": _text("CS-204611"),
        "decision": _text("The referral was closed with no further action."),
        "reasons": _text("Missed appointments."),
        "outcome_sought": _text("A strategy discussion."),
        "disagreement_date": {"value": {"type": "datepicker", "selected_date": "2026-11-26"}},
    }
    body = view_submission_body(
        view_submission_payload("intake", values, user_id=AMARA_SLACK, view_id="V1")
    )
    response = await teams.client.post(
        "/slack/events", data=body, headers=signed_headers(SLACK_SECRET, body)
    )
    assert response.status == 200
    (dispute,) = teams.disputes()
    await teams.deliver()

    # Each is pinged on their own platform.
    ping = ping_for(teams, BEN, dispute.ref)
    assert "Amara Okafor" in ping.shown
    assert any(dispute.ref in (m.text or "") for m in slack.messages_in("D" + AMARA_SLACK))
    assert slack.messages_in("D" + AMARA_SLACK) and not teams.chat(AMARA)

    # Ben acts in Teams; Amara hears of it in Slack, and the channel thread moves on.
    await teams.press(BEN, ping, {"action": "acknowledge", "ref": dispute.ref})
    assert "Acknowledged by Ben Carter" in teams.now(ping).shown
    await teams.deliver()
    told = [m for m in slack.messages_in("D" + AMARA_SLACK) if "acknowledged" in (m.text or "")]
    assert told and "Ben Carter" in (told[0].text or "")
    roots = [m for m in slack.messages_in("C0DISPUTES") if not m.thread_ts]
    assert len(roots) == 1 and roots[0].updates >= 1
    # The disputes channel is on both platforms: each side has its own thread of the dispute.
    teams_posts = [p for p in teams.fake.posts(DISPUTES) if dispute.ref in p.shown]
    assert teams_posts, "the Teams channel has the dispute's thread too"
    assert "CS-204611" not in " ".join(p.shown for p in teams_posts)


async def test_someone_met_only_in_a_channel_is_reached_in_a_new_personal_chat(
    teams_ben_unmet: Teams,
) -> None:
    teams = teams_ben_unmet
    form = await escalate(teams)
    await teams.press(AMARA, form, form.submit_data()[0], **INTAKE)
    (dispute,) = teams.disputes()
    await teams.deliver()
    assert teams.chat(BEN) == []
    # Ben @mentions the bot in the team: the bot may now open a chat with him.
    await teams.say(BEN, "<at>Escalation bot</at> help", channel=DISPUTES)
    await teams.deliver()
    assert [c["members"][0]["id"] for c in teams.fake.created] == [BEN.id]
    assert any(dispute.ref in r.shown and r.submit_data() for r in teams.chat(BEN))


async def test_an_escalation_form_opened_before_someone_else_escalated_is_refused(
    teams: Teams,
) -> None:
    # Both practitioners open the Escalate form at stage 1; Amara sends hers first. Ben's,
    # opened at stage 1, must not move the dispute on again (to stage 3).
    dispute = await log_dispute(teams)
    ping = ping_for(teams, BEN, dispute.ref)
    await teams.press(BEN, ping, {"action": "escalate", "ref": dispute.ref})
    form = teams.chat(BEN)[-1]
    (data,) = form.submit_data()
    assert data["stage"] == 1
    moved = teams.core.service.act(
        dispute.ref, "amara.okafor", Action.ESCALATE, reason="No agreement at stage 1."
    )
    assert moved.ok, moved.text
    await teams.press(BEN, form, data, reason="We cannot agree.")
    assert teams.events(dispute.ref).count("StageEscalated") == 1
    assert "already been escalated to stage 2" in teams.now(form).shown


async def test_a_refused_button_goes_on_the_record_and_sends_no_form(teams: Teams) -> None:
    # Dan (police) is not part of this dispute. Whether the button acts at once (Acknowledge)
    # or would open a form (Escalate), he is told privately, gets no form, and each attempt is
    # recorded in the dispute's log, as a refused action always is.
    dispute = await log_dispute(teams)
    await teams.say(DAN, "hello")
    for action in ("acknowledge", "escalate"):
        before = len(teams.chat(DAN))
        body = activity(DAN, teams.fake.service_url, value={"action": action, "ref": dispute.ref})
        assert (await teams.post(body)).status == 202
        (told,) = teams.chat(DAN)[before:]
        assert "can't" in told.shown
        assert "Input." not in json.dumps(told.cards)  # a note, not the action's form
    assert teams.events(dispute.ref).count("ActionRefused") == 2
    assert "Acknowledged" not in teams.events(dispute.ref)
