"""Teams cards: every card the bot renders is a valid Adaptive Card 1.5, user text is shown
literally, and errors sit under the field they name. Plus the bot's turns through botbuilder's
TestAdapter, and how Bot Connector failures reach the outbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from fakes.bot_connector import card_problems, without_teams_extensions

from bot.adapters.teams import cards
from bot.adapters.teams.bot import TeamsBot
from bot.adapters.teams.platform import TeamsPlatform, failure, retry_after
from bot.app import Core
from bot.conversation import HELP
from bot.flows.engine import FlowRunner, Notice
from bot.messages import ActionId, Button, Message, Recipient
from store import conversation_refs as refs

NASTY = (
    "See [the file](https://evil.example/a) and [x][1]\n[1]: https://evil.example "
    "<at>Olivia Brandt</at> <https://evil.example> www.evil.example javascript:alert(1) "
    "{{DATE(2026-01-01T00:00:00Z, SHORT)}} \x1b[31m"
)


def _all_text(card: dict[str, Any]) -> str:
    return json.dumps(without_teams_extensions(card), ensure_ascii=False)


# --- escaping -----------------------------------------------------------------------------------


def test_escape_breaks_links_mentions_and_card_functions() -> None:
    shown = cards.escape(NASTY)
    assert "](" not in shown and "][" not in shown and "]:" not in shown
    assert "<at>" not in shown and "<https" not in shown
    assert "https://" not in shown and "www." not in shown
    assert "{{" not in shown and "\x1b" not in shown
    # The words are all still there, readable once the invisible joiners are taken out.
    assert shown.replace("\u2060", "") == NASTY.replace("\x1b", "")


def test_ordinary_text_is_left_alone() -> None:
    text = "WST-2026-0001: Amara's note (stage 2) - 50% agreed; see CS-204611."
    assert cards.escape(text) == text


# --- messages -----------------------------------------------------------------------------------


def test_a_message_card_has_its_facts_and_a_submit_per_button() -> None:
    message = Message(
        Recipient.person("ben.carter"),
        f"Amara raised a disagreement. {NASTY}",
        facts=[("Reasons", NASTY), ("Case reference", "CS-204611")],
        buttons=[Button(a, "WST-2026-0001", "primary") for a in list(ActionId)[:6]],
        ref="WST-2026-0001",
    )
    card = cards.message_card(message)
    assert card_problems(card) == []
    assert card["version"] == "1.5" and card["msteams"] == {"width": "Full"}
    (facts,) = [b for b in card["body"] if b["type"] == "FactSet"]
    assert [f["title"] for f in facts["facts"]] == ["Reasons", "Case reference"]
    assert [a["data"] for a in card["actions"]] == [
        {"action": a.value, "ref": "WST-2026-0001"} for a in list(ActionId)[:6]
    ]
    assert {a["type"] for a in card["actions"]} == {"Action.Submit"}
    assert card["actions"][0]["style"] == "positive"
    shown = _all_text(card)
    assert "](" not in shown and "<at>" not in shown and "https://" not in shown


def test_a_very_long_message_is_clipped_to_fit_a_teams_message() -> None:
    message = Message(
        Recipient.channel(),
        "x" * 50_000,
        facts=[(f"Fact {i}", "y" * 10_000) for i in range(100)],
        kind="digest",
    )
    card = cards.message_card(message)
    assert card_problems(card) == []
    assert len(json.dumps(card)) < 28_000 * 5  # each part is bounded
    assert len(card["body"][1]["facts"]) == cards.MAX_FACTS


def test_mentions_are_teams_entities_whose_text_is_in_the_card() -> None:
    mention = cards.Mention("aad-ben", "Ben Carter")
    card = cards.message_card(
        Message(Recipient.channel(), "Professional disagreement WST-2026-0001", kind="thread_root"),
        mentions=[mention],
        extra_facts=[("Still to open the bot", f"{mention.text} (Royal Wolverhampton NHS Trust)")],
    )
    assert card_problems(card) == []
    assert card["msteams"]["entities"] == [
        {
            "type": "mention",
            "text": "<at>Ben Carter</at>",
            "mentioned": {"id": "aad-ben", "name": "Ben Carter"},
        }
    ]
    # The published schema knows no `msteams`: the card is valid only with it set aside...
    assert card_problems({**card, "msteams": {"width": "Full", "colour": "red"}})
    # ...and a mention whose text is not in the card is caught.
    broken = {**card, "msteams": {"entities": [cards.Mention("aad-x", "Nobody Here").entity()]}}
    assert any("appears nowhere" in p for p in card_problems(broken))


def test_notice_done_and_acted_cards_are_valid() -> None:
    for card in (
        cards.notice_card(NASTY, title="Sorry", attention=True),
        cards.done_card("Logged", NASTY, "Logged by Amara Okafor at Thu 26 Nov, 10:00."),
        cards.acted_card(
            "Acknowledged by Ben Carter at Thu 26 Nov, 10:20.",
            NASTY,
            [("Stage", "1 of 4")],
            [Button(ActionId.ADD_NOTE, "WST-2026-0001")],
        ),
    ):
        assert card_problems(card) == []
        assert "<at>" not in _all_text(card)


# --- flows as forms -------------------------------------------------------------------------------


def _runners(core: Core) -> list[tuple[str, FlowRunner]]:
    c = core.conversations
    known = core.service.directory.person("amara.okafor")
    out = [
        ("intake, known person", c.resume("t:1", known, display_name="Amara Okafor")),
        ("intake, stranger", c.resume("t:2", None, display_name="Sam Stranger")),
    ]
    for button, flow in c.actions.items():
        out.append((button.value, FlowRunner(flow.flow, c.context(known))))
    return out


def test_every_flow_renders_as_a_valid_card_form(core: Core) -> None:
    for name, runner in _runners(core):
        card = cards.flow_card(
            runner, title=runner.flow.title, submit_title="Save", data={"form": name}
        )
        assert card_problems(card) == [], name
        ids = [b["id"] for b in card["body"] if b["type"].startswith("Input.")]
        expected = [q.id for q in runner.applicable() if q.kind != "confirm"]
        assert ids == expected, name
        (action,) = card["actions"]
        assert action["type"] == "Action.Submit" and action["data"]["shown"] == expected


def test_no_question_id_collides_with_the_bots_own_submit_keys(core: Core) -> None:
    for name, runner in _runners(core):
        clash = {q.id for q in runner.flow.questions} & cards.RESERVED
        assert clash == set(), name


def test_errors_notices_and_typed_values_come_back_on_the_form(core: Core) -> None:
    c = core.conversations
    amara = core.service.directory.person("amara.okafor")
    runner = c.resume("t:3", amara)
    raw = {"case_ref": NASTY[:30], "reasons": "x" * 4000, "disagreement_date": "31/02/2026"}
    errors, _ = runner.answer_all({**raw, "confirm": "yes"})  # sending the form confirms it
    card = cards.flow_card(
        runner,
        title="Log a professional disagreement",
        submit_title="Log it",
        data={"form": "intake"},
        raw=raw,
        errors=errors,
        notices=[Notice("Call the police on 999 now.", urgent=True)],
    )
    assert card_problems(card) == []
    body = card["body"]
    ids = [b.get("id") for b in body]
    for question_id in errors:
        error = body[ids.index(f"error-{question_id}")]
        assert error["color"] == "attention"
        assert runner.flow.question(question_id).prompt in error["text"]
        assert ids.index(f"error-{question_id}") == ids.index(question_id) + 1
    assert "Act now" in json.dumps(body) and "Call the police" in json.dumps(body)
    inputs = {b["id"]: b for b in body if b.get("type", "").startswith("Input.")}
    assert inputs["reasons"]["value"] == "x" * 3000  # cut at the field's limit, not altered
    assert "value" not in inputs["disagreement_date"]  # not a date: the field is left empty
    assert inputs["immediate_risk"]["isRequired"] is True
    assert "isRequired" not in inputs["other_person"]  # optional


def test_answers_given_are_prefilled(core: Core) -> None:
    amara = core.service.directory.person("amara.okafor")
    runner = core.conversations.resume("t:4", amara)
    runner.answer_all({"immediate_risk": "no", "other_agency": "rwt", "other_person": "ben.carter"})
    card = cards.flow_card(runner, title="t", submit_title="s", data={})
    inputs = {b["id"]: b for b in card["body"] if b.get("type", "").startswith("Input.")}
    assert inputs["immediate_risk"]["value"] == "no"
    assert inputs["other_agency"]["value"] == "rwt"
    assert inputs["other_person"]["value"] == "ben.carter"
    # Once the agency is chosen, only its people are offered.
    assert all("(" not in c["title"] for c in inputs["other_person"]["choices"])


def test_choice_titles_are_escaped_on_every_form_not_only_the_first() -> None:
    # Titles are escaped once each and remembered: the second form must be as safe as the first.
    pairs = [("x", "Dr <at>Boss</at> [click](https://evil.example)"), ("y", "Plain Name")]
    for _ in range(2):
        first, plain_one = cards._choices(pairs)
        assert first["title"] == cards.escape(pairs[0][1])
        assert "<at>" not in first["title"] and "](" not in first["title"]
        assert plain_one == {"title": "Plain Name", "value": "y"}


def test_form_values_drop_the_bots_own_keys() -> None:
    value = {"form": "intake", "shown": ["a"], "risk_alerted": True, "case_ref": "CS-1", "ref": "X"}
    assert cards.form_values(value) == {"case_ref": "CS-1"}


# --- failures ---------------------------------------------------------------------------------------


def _error(status: int, headers: dict[str, str] | None = None) -> Any:
    return SimpleNamespace(
        response=SimpleNamespace(status_code=status, headers=headers or {}),
        error=SimpleNamespace(error=SimpleNamespace(code="SomeCode")),
    )


def test_a_429_asks_the_outbox_to_wait_as_long_as_teams_said() -> None:
    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert failure(_error(429, {"Retry-After": "12"}), now).retry_after == 12
    dated = failure(_error(429, {"Retry-After": "Thu, 26 Nov 2026 10:01:30 GMT"}), now)
    assert dated.retry_after == 90
    assert failure(_error(429), now).retry_after == 30
    assert retry_after("soon") == 30


def test_refusals_are_permanent_and_outages_are_retried() -> None:
    for status in (400, 403, 404):
        assert failure(_error(status)).permanent, status
    for status in (401, 500, 502, 503):
        assert not failure(_error(status)).permanent, status
    assert "SomeCode" in failure(_error(403)).reason


# --- turns through botbuilder's TestAdapter ---------------------------------------------------------


def _adapter(core: Core, aad: str) -> tuple[TestAdapter, list[int]]:
    kicks: list[int] = []
    template = Activity(
        channel_id="msteams",
        service_url="https://smba.example/uk/",
        from_property=ChannelAccount(id="29:someone", name="Ben Carter", aad_object_id=aad),
        recipient=ChannelAccount(id="28:bot", name="Escalation bot"),
        conversation=ConversationAccount(id="a:chat-1", conversation_type="personal"),
    )
    platform = TeamsPlatform(
        None,  # type: ignore[arg-type]  # personal-chat turns never send proactively
        "app-id",
        core.store,
        lambda: core.service.directory,
        {},
        core.service.clock,
    )
    bot = TeamsBot(core.conversations, platform, lambda: kicks.append(1))
    adapter = TestAdapter(bot.on_turn, template)
    adapter.on_turn_error = bot.on_error
    return adapter, kicks


def _card_of(activity: Activity) -> dict[str, Any]:
    (attachment,) = activity.attachments
    assert attachment.content_type == cards.CONTENT_TYPE
    return attachment.content


async def test_help_is_answered_in_a_card_and_the_chat_is_remembered(core: Core) -> None:
    ben = core.service.directory.person("ben.carter")
    core.service.remember_person(
        {**ben.model_dump(mode="json", exclude_none=True), "teams_id": "aad-ben"}
    )
    adapter, _ = _adapter(core, "aad-ben")
    await adapter.receive_activity("escalate help")
    (reply,) = adapter.activity_buffer
    card = _card_of(reply)
    assert card_problems(card) == []
    assert HELP.splitlines()[1].split()[0] in json.dumps(card)
    with core.store.unit() as session:
        assert refs.person_keys(session, "teams", "ben.carter") == ["user:aad-ben"]


async def test_escalate_sends_the_form_and_a_button_from_a_stranger_is_refused(core: Core) -> None:
    adapter, _ = _adapter(core, "aad-unknown")
    await adapter.receive_activity("escalate")
    (form,) = adapter.activity_buffer
    assert "own_agency" in json.dumps(_card_of(form))
    adapter.activity_buffer.clear()
    await adapter.receive_activity(
        Activity(type="message", value={"action": "acknowledge", "ref": "WST-2026-0001"})
    )
    (refusal,) = adapter.activity_buffer
    assert "not in the partnership directory" in json.dumps(_card_of(refusal))


async def test_an_unknown_command_says_so_and_lists_the_commands(core: Core) -> None:
    ben = core.service.directory.person("ben.carter")
    core.service.remember_person(
        {**ben.model_dump(mode="json", exclude_none=True), "teams_id": "aad-ben"}
    )
    adapter, _ = _adapter(core, "aad-ben")
    await adapter.receive_activity("escalate frobnicate")
    (reply,) = adapter.activity_buffer
    shown = json.dumps(_card_of(reply))
    assert "frobnicate" in shown and "escalate timeline" in shown


@pytest.mark.parametrize("value", [{"form": "nonsense"}, {"action": "not-a-button", "ref": "X"}])
async def test_an_out_of_date_card_is_explained(core: Core, value: dict[str, Any]) -> None:
    adapter, _ = _adapter(core, "aad-unknown")
    await adapter.receive_activity(Activity(type="message", value=value))
    (reply,) = adapter.activity_buffer
    assert "out of date" in json.dumps(_card_of(reply))
