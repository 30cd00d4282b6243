"""Slack end to end: signed HTTP requests into the real aiohttp app and Bolt, against a fake
Slack Web API on 127.0.0.1 that checks tokens, arguments and Block Kit limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import wait_until
from fakes.slack_signing import app_home_opened_body, signed_headers, slash_command_body
from slackbot import (
    SECRET,
    STRANGER,
    SlackBot,
    day,
    intake_values,
    radio,
    select_,
    slack_bot,
    slack_id_of,
    text,
    view_of,
)
from sqlalchemy import select

from bot.adapters.slack.app import SlackConversations
from bot.app import build_core
from bot.clock import FakeClock
from bot.config import Settings
from bot.disputes import Dispute
from bot.web import slack_client
from store.models import OutboxRow

AMARA, BEN, DAN = (slack_id_of(p) for p in ("amara.okafor", "ben.carter", "dan.fielding"))
OLIVIA = slack_id_of("olivia.brandt")
# What Amara types as her reasons: Slack markup that must come back as plain text.
HOSTILE_REASONS = text("Missed appointments <!channel> and <@U999> <https://evil.example|click>")


@pytest.fixture
async def slack(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SlackBot]:
    async with slack_bot(tmp_path, clock, monkeypatch) as running:
        yield running


async def test_forged_signature_is_refused_and_stores_nothing(slack: SlackBot) -> None:
    body = slash_command_body(text="", user_id=AMARA)
    headers = signed_headers("not-the-secret", body)
    response = await slack.post(body, headers)
    assert response.status == 401
    assert slack.api.calls_to("views.open") == []
    with slack.core.store.unit() as session:
        assert session.execute(select(OutboxRow)).first() is None


async def test_a_stale_timestamp_is_refused(slack: SlackBot) -> None:
    body = slash_command_body(text="help", user_id=AMARA)
    response = await slack.post(body, signed_headers(SECRET, body, int(time.time()) - 600))
    assert response.status == 401


async def test_help_and_list_answer_privately(slack: SlackBot) -> None:
    response = await slack.command("help", user=AMARA)
    assert response.status == 200
    payload = await response.json()
    assert payload["response_type"] == "ephemeral"
    assert "escalate list" in payload["text"]
    stranger = await (await slack.command("list", user=STRANGER)).json()
    assert "not in the partnership directory" in stranger["text"]


async def test_escalate_opens_the_intake_modal(slack: SlackBot) -> None:
    response = await slack.command("", user=AMARA)
    assert response.status == 200
    (opened,) = slack.api.calls_to("views.open")
    view = view_of(opened)
    assert view["callback_id"] == "intake"
    ids = [b.get("block_id") for b in view["blocks"]]
    assert ids[:3] == [None, "immediate_risk", "scope"]
    # Amara is known by her email: she is not asked her own agency, and is remembered.
    assert "own_agency" not in ids
    assert slack.core.service.identify(slack_id=AMARA) is not None


async def test_immediate_risk_updates_the_modal_and_pings_the_lead_at_once(slack: SlackBot) -> None:
    await slack.command("", user=AMARA)
    (opened,) = slack.api.views
    view = {
        "id": opened.id,
        "hash": opened.hash,
        "callback_id": "intake",
        "private_metadata": "{}",
        "state": {"values": {"immediate_risk": radio("yes")}},
    }
    response = await slack.click("value", "", AMARA, view=view)
    assert response.status == 200
    (update,) = slack.api.calls_to("views.update")
    shown = json.dumps(update["view"])
    assert "Act now" in shown and "Olivia Brandt" in shown
    assert json.loads(json.loads(shown)["private_metadata"])["risk_alerted"] is True
    await slack.deliver()
    urgent = [m for m in slack.api.messages if "URGENT" in m.text]
    assert [m.channel for m in urgent] == ["D" + OLIVIA]


async def test_invalid_answers_come_back_inline_and_nothing_is_created(slack: SlackBot) -> None:
    values = intake_values(
        disagreement_date=day("2030-01-01"),
        reasons=text("x" * 50_000),
        other_agency=select_("not-an-agency"),
    )
    response = await slack.submit("intake", values, user_id=AMARA, view_id="V1")
    payload = await response.json()
    assert payload["response_action"] == "errors"
    errors = payload["errors"]
    assert "future" in errors["disagreement_date"]
    assert "50,000 characters" in errors["reasons"]
    assert "not one of the options" in errors["other_agency"]
    assert slack.disputes() == []


async def test_out_of_scope_says_which_procedure_applies(slack: SlackBot) -> None:
    values = intake_values(scope=select_("complaint"))
    payload = await (await slack.submit("intake", values, user_id=AMARA, view_id="V2")).json()
    assert payload["response_action"] == "errors"
    assert "complaint" in payload["errors"]["scope"].lower()
    assert slack.disputes() == []


async def log_dispute(slack: SlackBot) -> Dispute:
    response = await slack.submit(
        "intake", intake_values(reasons=HOSTILE_REASONS), user_id=AMARA, view_id="V9"
    )
    assert response.status == 200
    assert await response.text() == "", await response.text()
    (dispute,) = slack.disputes()
    await slack.deliver()
    return dispute


async def test_submission_logs_once_posts_the_thread_and_pings_with_buttons(
    slack: SlackBot,
) -> None:
    dispute = await log_dispute(slack)
    # The same modal submitted again (a double click, a retry) logs nothing more.
    again = await slack.submit(
        "intake", intake_values(reasons=HOSTILE_REASONS), user_id=AMARA, view_id="V9"
    )
    assert again.status == 200
    assert len(slack.disputes()) == 1

    (root,) = [m for m in slack.api.messages_in("C0DISPUTES") if not m.thread_ts]
    root_text = json.dumps(root.blocks) + root.text
    assert dispute.ref in root_text and "Royal Wolverhampton NHS Trust" in root_text
    assert "CS-204611" not in root_text and "Missed appointments" not in root_text
    replies = [m for m in slack.api.messages_in("C0DISPUTES") if m.thread_ts]
    assert replies and all(m.thread_ts == root.ts for m in replies)

    (to_ben,) = slack.api.messages_in("D" + BEN)
    shown = json.dumps(to_ben.blocks)
    assert "CS-204611" in shown
    # What Amara typed comes back as text: no channel ping, no mention, no link.
    assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown
    assert "&lt;@U999&gt;" in shown and "<https://evil" not in shown
    actions = [b for b in to_ben.blocks if b["type"] == "actions"]
    assert actions[0]["elements"][0]["action_id"] == "acknowledge"
    assert slack.api.messages_in("D" + AMARA), "the raiser gets the reference and deadlines"


async def test_acknowledge_button_acts_once_and_shows_who_acted(slack: SlackBot) -> None:
    dispute = await log_dispute(slack)
    (to_ben,) = slack.api.messages_in("D" + BEN)
    message = {"type": "message", "ts": to_ben.ts, "text": to_ben.text, "blocks": to_ben.blocks}
    kw = {"channel_id": "D" + BEN, "message_ts": to_ben.ts, "message": message}
    assert (await slack.click("acknowledge", dispute.ref, BEN, **kw)).status == 200
    updated = slack.api.message("D" + BEN, to_ben.ts)
    assert updated is not None
    after = json.dumps(updated.blocks)
    assert "acknowledged" in after and '"actions"' not in after
    # A double click: nothing more happens, and Ben is told privately.
    await slack.click("acknowledge", dispute.ref, BEN, **kw)
    assert any("already acknowledged" in e.text for e in slack.api.ephemerals)
    with slack.core.store.unit() as session:
        events = slack.core.store.events(session, dispute.ref)
    assert [e.type for e in events].count("Acknowledged") == 1
    # The thread root was updated in place, not posted again.
    await slack.deliver()
    roots = [m for m in slack.api.messages_in("C0DISPUTES") if not m.thread_ts]
    assert len(roots) == 1 and roots[0].updates


async def test_the_message_clicked_is_updated_before_the_notices_start(
    slack: SlackBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the person waits for goes first: the notices the click queued are sent only once
    # the message clicked is updated, not alongside it.
    dispute = await log_dispute(slack)
    (to_ben,) = slack.api.messages_in("D" + BEN)
    message = {"type": "message", "ts": to_ben.ts, "text": to_ben.text, "blocks": to_ben.blocks}
    kw = {"channel_id": "D" + BEN, "message_ts": to_ben.ts, "message": message}
    sending: list[bool] = []
    update = slack.api._m_chat_update

    def noted_update(args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel") == "D" + BEN:  # the message clicked, not the channel's root
            sending.append(bool(slack.server._kicks))
        return update(args)

    monkeypatch.setattr(slack.api, "_m_chat_update", noted_update)
    assert (await slack.click("acknowledge", dispute.ref, BEN, **kw)).status == 200
    await slack.deliver()
    assert sending == [False], "the notices started before the message was updated"
    assert any("acknowledged" in m.text for m in slack.api.messages_in("D" + AMARA))


async def test_someone_not_allowed_gets_a_private_explanation(slack: SlackBot) -> None:
    dispute = await log_dispute(slack)
    await slack.click("acknowledge", dispute.ref, DAN, channel_id="D" + DAN)
    (refusal,) = slack.api.ephemerals
    assert refusal.user == DAN and "can't" in refusal.text
    with slack.core.store.unit() as session:
        events = slack.core.store.events(session, dispute.ref)
    assert "Acknowledged" not in [e.type for e in events]


async def test_a_button_with_questions_opens_its_modal_then_acts(slack: SlackBot) -> None:
    dispute = await log_dispute(slack)
    (to_ben,) = slack.api.messages_in("D" + BEN)
    await slack.click(
        "add_note", dispute.ref, BEN, channel_id="D" + BEN, message_ts=to_ben.ts, trigger_id="T7"
    )
    (opened,) = slack.api.calls_to("views.open")
    view = view_of(opened)
    assert view["callback_id"] == "action:add_note"
    metadata = view["private_metadata"]
    values = {"text": text("Spoke with Amara; agreed to review the health records.")}
    response = await slack.submit(
        "action:add_note", values, user_id=BEN, private_metadata=metadata, view_id="V20"
    )
    assert response.status == 200
    with slack.core.store.unit() as session:
        events = slack.core.store.events(session, dispute.ref)
    assert "NoteAdded" in [e.type for e in events]


async def test_app_home_lists_my_open_disputes_and_retries_are_dropped(slack: SlackBot) -> None:
    dispute = await log_dispute(slack)
    body = app_home_opened_body(BEN)
    assert (await slack.post(body)).status == 200
    (published,) = slack.api.calls_to("views.publish")
    shown = json.dumps(published["view"])
    assert dispute.ref in shown and "Next deadline" in shown
    retry = {**signed_headers(SECRET, body), "X-Slack-Retry-Num": "1"}
    assert (await slack.post(body, retry)).status == 200
    assert len(slack.api.calls_to("views.publish")) == 1


async def test_a_rate_limit_is_honoured_by_the_outbox(slack: SlackBot, clock: FakeClock) -> None:
    slack.api.fail_next("chat.postMessage", "ratelimited", retry_after=45, times=3)
    await slack.submit("intake", intake_values(), user_id=AMARA, view_id="V30")
    await slack.deliver()
    with slack.core.store.unit() as session:
        rows = session.execute(select(OutboxRow)).scalars().all()
        failed = [r for r in rows if r.last_error == "Slack rate limit"]
        assert len(failed) == 3  # the thread root and the two direct messages
        assert all(r.status == "pending" and r.attempts == 1 for r in failed)
        assert all((r.next_attempt_at - clock.now()).total_seconds() == 45 for r in failed)
        # The thread reply waits behind its root, untried.
        (reply,) = [r for r in rows if r.kind == "thread"]
        assert reply.status == "pending" and reply.attempts == 0
    assert slack.api.messages == []
    # After the Retry-After, everything goes, the root first.
    clock.advance(timedelta(seconds=45))
    await slack.deliver()
    await slack.deliver()
    posted = slack.api.messages_in("C0DISPUTES")
    assert [m.thread_ts is None for m in posted] == [True, False]


async def test_the_modal_waits_until_every_request_in_flight_has_its_answer(
    slack: SlackBot,
) -> None:
    # A request still arriving (its body half sent) is counted as waiting for its answer; the
    # modal of an /escalate answered meanwhile is built and opened only once that one is too.
    slack.server.inflight.patience = 60
    await slack.command("help", user=AMARA)  # Amara known by her Slack id: no users.info
    late = slash_command_body(text="help", user_id=BEN)
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(late)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed_headers(SECRET, late).items())
        + "\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(slack.client.host, slack.client.port)
    try:
        writer.write(head + late[:10])
        await writer.drain()
        await wait_until(lambda: slack.server.inflight.waiting, "its headers read", every=0.001)
        response = await slack.command("", user=AMARA, settle=False)
        assert response.status == 200  # Slack has its answer at once
        await wait_until(lambda: slack.server.inflight.held, "the listener parked", every=0.001)
        assert slack.api.calls_to("views.open") == []
        writer.write(late[10:])
        await writer.drain()
        answer = await reader.readuntil(b"escalate list")
        assert answer.startswith(b"HTTP/1.1 200")
        await slack.server.settle()
        (opened,) = slack.api.calls_to("views.open")
        assert view_of(opened)["callback_id"] == "intake"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_the_modal_is_built_only_once_the_answer_is_written(
    slack: SlackBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer can take a moment to go out (a slow client, a full socket buffer). The work
    # after the ack, on a worker thread holding the interpreter, would delay it further: it
    # waits until the answer is written, not only until the handler has returned.
    loop = asyncio.get_running_loop()
    events: list[str] = []
    started = asyncio.Event()
    prepare, write_eof = web.Response.prepare, web.Response.write_eof
    fresh_intake = SlackConversations._fresh_intake
    answers: set[int] = set()  # the bot's answers to Slack, not the fake Slack API's

    async def noted_prepare(self: web.Response, request: web.BaseRequest) -> Any:
        if request.path == "/slack/events" and not self.prepared:
            answers.add(id(self))
        return await prepare(self, request)

    async def slow_write_eof(self: web.Response, data: bytes = b"") -> None:
        if id(self) in answers:
            answers.discard(id(self))  # once: aiohttp prepares and ends it again, a no-op
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), 0.2)
            events.append("answer written")
        await write_eof(self, data)

    def watched_intake(self: SlackConversations, *args: Any) -> Any:
        events.append("modal built")
        loop.call_soon_threadsafe(started.set)
        return fresh_intake(self, *args)

    monkeypatch.setattr(web.Response, "prepare", noted_prepare)
    monkeypatch.setattr(web.Response, "write_eof", slow_write_eof)
    monkeypatch.setattr(SlackConversations, "_fresh_intake", watched_intake)
    response = await slack.command("", user=AMARA)
    assert response.status == 200
    assert events == ["answer written", "modal built"]
    assert len(slack.api.calls_to("views.open")) == 1


async def test_slack_is_answered_in_time_even_when_the_database_is_slow(
    slack: SlackBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database hangs while the dispute is logged: Slack still gets its answer (the modal
    # closes), and the dispute is logged once the database is back.
    slack.server.budget.seconds = 0.2
    release = threading.Event()
    original = slack.core.conversations.finish_intake

    def slow(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(timeout=30)
        return original(*args, **kwargs)

    monkeypatch.setattr(slack.core.conversations, "finish_intake", slow)
    response = await slack.submit(
        "intake", intake_values(), user_id=AMARA, view_id="V40", settle=False
    )
    assert response.status == 200 and await response.text() == ""
    assert slack.disputes() == []  # still waiting on the database
    release.set()
    await slack.deliver()
    assert len(slack.disputes()) == 1
    assert slack.api.messages_in("D" + BEN), "the other practitioner is still told"


async def test_a_slow_command_answers_through_the_response_url(
    slack: SlackBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack.server.budget.seconds = 0.2
    release = threading.Event()
    original = slack.core.conversations.command

    def slow(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(timeout=30)
        return original(*args, **kwargs)

    monkeypatch.setattr(slack.core.conversations, "command", slow)
    response = await slack.command("timeline", user=AMARA, settle=False)
    assert response.status == 200
    assert slack.api.responses == []
    release.set()
    await slack.deliver()
    (late,) = slack.api.responses
    assert late["response_type"] == "ephemeral" and "Wolverhampton" in late["text"]


async def test_someone_not_in_the_directory_is_guided_through_the_intake(slack: SlackBot) -> None:
    await slack.command("", user=STRANGER)
    (opened,) = slack.api.views
    ids = [b.get("block_id") for b in opened.view["blocks"]]
    assert {"own_name", "own_agency", "own_manager"} <= set(ids)
    values = intake_values(
        own_name=text("Sam Stranger"),
        own_agency=select_("cwc-childrens"),
        own_manager=select_("tom.hadley"),
    )
    response = await slack.submit("intake", values, user_id=STRANGER, view_id="V50")
    assert await response.text() == ""
    await slack.deliver()
    # Remembered with their Slack id: next time they are known.
    known = slack.core.service.identify(slack_id=STRANGER)
    assert known is not None and known.agency == "cwc-childrens" and known.manager == "tom.hadley"


async def test_digest_on_demand_shows_only_references_and_deadlines(
    slack: SlackBot, clock: FakeClock
) -> None:
    dispute = await log_dispute(slack)
    clock.advance(timedelta(days=4))  # Mon 30 Nov: due tomorrow, so in the digest
    payload = await (await slack.command("digest", user=AMARA)).json()
    shown = json.dumps(payload)
    assert payload["response_type"] == "ephemeral"
    assert dispute.ref in shown and "CS-204611" not in shown
    assert "1 due within one working day" in payload["text"]


async def test_web_api_calls_share_kept_alive_connections_while_serving(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with slack_bot(tmp_path, clock, monkeypatch) as bot:
        client = bot.server.slack_client
        assert client is not None
        pool = client.session
        assert pool is not None and not pool.closed
        for trigger in ("T1", "T2", "T3"):
            assert (await bot.command("", user=AMARA, trigger=trigger)).status == 200
        opened = [
            peer
            for (method, _), peer in zip(bot.api.calls, bot.api.peers, strict=True)
            if method == "views.open"
        ]
        # Three modals, one connection: not a new connection (a TLS handshake with Slack) each.
        assert len(opened) == 3 and len(set(opened)) == 1
    assert pool.closed and client.session is None


def test_the_web_api_client_does_not_format_debug_messages_nobody_reads(
    tmp_path: Path, clock: FakeClock
) -> None:
    # slack_sdk builds a debug message of each request (its data included) when its logger's
    # own level is DEBUG or unset; the bot's client has a logger that says warnings only.
    core = build_core(
        Settings(database_url=f"sqlite:///{tmp_path}/x.db", slack_bot_token="xoxb-test"),
        clock=clock,
    )
    try:
        client = slack_client(core)
        assert client._logger.level == logging.WARNING
    finally:
        core.store.dispose()


async def test_an_answer_changed_in_an_action_modal_updates_that_modal(slack: SlackBot) -> None:
    # Bolt's block_action ignores a `callback_id` constraint: routed by it alone, a change in
    # an action's modal reached the intake's listener and became the intake form.
    dispute = await log_dispute(slack)
    (to_ben,) = slack.api.messages_in("D" + BEN)
    await slack.click(
        "propose_resolution",
        dispute.ref,
        BEN,
        channel_id="D" + BEN,
        message_ts=to_ben.ts,
        trigger_id="T8",
    )
    (opened,) = slack.api.views
    shown = view_of(slack.api.calls_to("views.open")[0])
    assert shown["callback_id"] == "action:propose_resolution"
    view = {
        "id": opened.id,
        "hash": opened.hash,
        "callback_id": shown["callback_id"],
        "private_metadata": shown["private_metadata"],
        "state": {"values": {"more_1": radio("yes")}},
    }
    response = await slack.click("value", "", BEN, view=view)
    assert response.status == 200
    await slack.server.settle()
    (update,) = slack.api.calls_to("views.update")
    assert update["view"]["callback_id"] == "action:propose_resolution"
    assert update["view_id"] == opened.id
