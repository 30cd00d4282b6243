"""Malformed Slack requests, properly signed so they get past the signature check into Bolt:
each is answered with a 4xx or a polite message, never a 500 or a stack trace, the bot keeps
serving, and nothing is written to the store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.slack_api import check_view
from fakes.slack_signing import (
    app_home_opened_body,
    block_actions_body,
    block_actions_payload,
    event_callback_body,
    signed_headers,
    slash_command_body,
)
from slackbot import SECRET, SlackBot, intake_values, radio, select_, slack_bot, slack_id_of, text

from bot.clock import FakeClock

AMARA = slack_id_of("amara.okafor")
BEN = slack_id_of("ben.carter")
LEAKS = ("Traceback", 'File "', ".py", "Error", "Exception", "line ")


def form(**fields: str) -> bytes:
    return urlencode(fields).encode()


def payload(data: Any) -> bytes:
    return form(payload=json.dumps(data))


@pytest.fixture
async def bot(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SlackBot]:
    async with slack_bot(tmp_path, clock, monkeypatch) as running:
        # Amara and Ben are found by email once and remembered: that write happens here, so
        # the hostile requests below have nothing legitimate left to write.
        for user in (AMARA, BEN):
            assert (await running.command("help", user=user)).status == 200
        yield running


async def open_dispute(bot: SlackBot) -> str:
    response = await bot.submit("intake", intake_values(), user_id=AMARA, view_id="VOPEN")
    assert response.status == 200 and await response.text() == ""
    await bot.deliver()
    (dispute,) = bot.disputes()
    return dispute.ref


# name -> (body, content type or None for Slack's own)
BODIES: dict[str, tuple[bytes, str | None]] = {
    "not form-encoded at all": (b"%%%=&&&=%zz\x7f", None),
    "not UTF-8": (b"\xff\xfe\x00payload=\x81", None),
    "JSON content type, not JSON": (b"this is not json", "application/json"),
    "a JSON list": (b"[1, 2, 3]", "application/json"),
    "a JSON string": (b'"block_actions"', "application/json"),
    "a brace that is not JSON": (b"{type: block_actions", None),
    "payload is not JSON": (form(payload="{not json"), None),
    "payload is a JSON list": (form(payload="[1, 2]"), None),
    "payload is a JSON number": (form(payload="42"), None),
    "payload is an empty object": (payload({}), None),
    "payload of an unknown type": (payload({"type": "message_action_v9"}), None),
    "block_actions without actions": (
        payload({"type": "block_actions", "user": {"id": AMARA}}),
        None,
    ),
    "block_actions with no action in the list": (
        payload({"type": "block_actions", "user": {"id": AMARA}, "actions": []}),
        None,
    ),
    "block_actions without a user": (
        payload(
            {
                "type": "block_actions",
                "actions": [{"action_id": "acknowledge", "value": "WST-2026-0001"}],
            }
        ),
        None,
    ),
    "block_actions whose user is a string": (
        payload(
            {
                "type": "block_actions",
                "user": AMARA,
                "actions": [{"action_id": "acknowledge", "value": "WST-2026-0001"}],
            }
        ),
        None,
    ),
    "block_actions whose action is a string": (
        payload({"type": "block_actions", "user": {"id": AMARA}, "actions": ["acknowledge"]}),
        None,
    ),
    "an unknown action id": (
        block_actions_body(block_actions_payload("frobnicate_v0", "WST-2026-0001", user_id=AMARA)),
        None,
    ),
    "a view_submission without a view": (
        payload({"type": "view_submission", "user": {"id": AMARA}}),
        None,
    ),
    "a view without a type": (
        payload(
            {
                "type": "view_submission",
                "user": {"id": AMARA},
                "view": {"id": "V1", "callback_id": "intake", "state": {"values": {}}},
            }
        ),
        None,
    ),
    "a view whose state is not Slack's shape": (
        payload(
            {
                "type": "view_submission",
                "user": {"id": AMARA},
                "view": {
                    "id": "V2",
                    "type": "modal",
                    "callback_id": "intake",
                    "state": {"values": {"case_ref": "zzz", "scope": {"value": 7}, "x": []}},
                },
            }
        ),
        None,
    ),
    "a slash command without a user": (form(command="/escalate", text="list"), None),
    "a slash command for another app": (
        slash_command_body(command="/order-pizza", user_id=AMARA),
        None,
    ),
    "an event callback without an event": (json.dumps({"type": "event_callback"}).encode(), None),
    "app_home_opened without a user": (
        event_callback_body({"type": "app_home_opened", "tab": "home"}),
        None,
    ),
    "an event of a kind not subscribed": (
        event_callback_body({"type": "reaction_added", "user": AMARA}),
        None,
    ),
}


def no_leak(body: str) -> list[str]:
    return [word for word in LEAKS if word in body]


async def test_malformed_signed_requests_get_a_4xx_or_a_polite_answer_and_write_nothing(
    bot: SlackBot,
) -> None:
    ref = await open_dispute(bot)
    before = bot.row_counts()
    problems = []
    for name, (body, content_type) in BODIES.items():
        response = await bot.post(body, signed_headers(SECRET, body, content_type=content_type))
        shown = await response.text()
        await bot.deliver()
        if response.status >= 500 or not (200 <= response.status < 300 or response.status < 500):
            problems.append(f"{name}: HTTP {response.status}")
        if no_leak(shown):
            problems.append(f"{name}: the answer shows {no_leak(shown)}: {shown[:200]!r}")
        if bot.row_counts() != before:
            problems.append(f"{name}: the store changed")
    assert problems == []
    # Still serving, and the dispute is as it was.
    assert (await bot.client.get("/healthz")).status == 200
    reply = await (await bot.command(f"status {ref}", user=AMARA)).json()
    assert ref in json.dumps(reply)


async def test_unsigned_garbage_is_refused_before_anything_is_read(bot: SlackBot) -> None:
    before = bot.row_counts()
    for name, (body, content_type) in BODIES.items():
        headers = signed_headers("not-the-secret", body, content_type=content_type)
        response = await bot.post(body, headers)
        assert 400 <= response.status < 500, name
        assert no_leak(await response.text()) == [], name
    assert bot.row_counts() == before
    assert bot.api.ephemerals == [] and bot.api.calls_to("views.open") == []


async def test_a_button_of_an_older_version_is_explained_privately(bot: SlackBot) -> None:
    ref = await open_dispute(bot)
    before = bot.row_counts()
    response = await bot.click("frobnicate_v0", ref, BEN)
    assert response.status == 200
    await bot.deliver()
    (said,) = bot.api.ephemerals
    assert said.user == BEN and "older version" in said.text
    assert bot.row_counts() == before


NOT_REFERENCES = ["", "<!channel> please", "WST-2026-0001; DROP TABLE x", "x" * 3000, "ESC-20XX-1"]


async def test_a_button_whose_value_is_not_a_dispute_reference_does_nothing(bot: SlackBot) -> None:
    await open_dispute(bot)
    before = bot.row_counts()
    for value in NOT_REFERENCES:
        assert (await bot.click("acknowledge", value, BEN)).status == 200
        await bot.deliver()
        said = bot.api.ephemerals.pop()
        assert said.user == BEN and "doesn't point to any dispute" in said.text, value
        # Nothing of the value is echoed back.
        assert "channel" not in said.text and "DROP" not in said.text and "xxx" not in said.text
    assert bot.row_counts() == before


async def test_a_missing_button_value_does_nothing(bot: SlackBot) -> None:
    await open_dispute(bot)
    before = bot.row_counts()
    assert (await bot.click("escalate", None, BEN)).status == 200
    await bot.deliver()
    assert "doesn't point to any dispute" in bot.api.ephemerals[0].text
    assert bot.row_counts() == before


async def test_a_form_of_an_older_version_says_nothing_was_saved(bot: SlackBot) -> None:
    response = await bot.submit("intake_v0", {"agency": text("rwt")}, user_id=AMARA)
    answer = await response.json()
    assert answer["response_action"] == "update"
    assert check_view(answer["view"]) == []
    assert "nothing was saved" in json.dumps(answer["view"])
    assert bot.disputes() == []


async def test_an_intake_whose_questions_were_renamed_comes_back_as_the_current_form(
    bot: SlackBot,
) -> None:
    # An older intake called the other agency's question "agency" and had no "scope": Slack
    # refuses errors for blocks a view lacks, so the current form comes back, answers kept.
    old = intake_values(agency=select_("rwt"))
    del old["other_agency"], old["scope"]
    answer = await (await bot.submit("intake", old, user_id=AMARA, view_id="VOLD")).json()
    assert answer["response_action"] == "update"
    view = answer["view"]
    assert check_view(view) == [] and view["callback_id"] == "intake"
    shown = json.dumps(view)
    assert "This form has changed" in shown
    assert "CS-204611" in shown, "what parsed is kept"
    assert {"scope", "other_agency"} <= {b.get("block_id") for b in view["blocks"]}
    assert bot.disputes() == []


async def test_errors_for_questions_the_form_has_stay_inline(bot: SlackBot) -> None:
    values = intake_values(case_ref=text(""))
    answer = await (await bot.submit("intake", values, user_id=AMARA, view_id="VX")).json()
    assert answer["response_action"] == "errors"
    assert set(answer["errors"]) == {"case_ref"}


UNREADABLE_METADATA = [
    "not json",
    "",
    '"WST-2026-0001"',
    "[1, 2]",
    '{"ref": 5}',
    '{"ref": "<!channel>"}',
    "{}",
]


async def test_an_action_form_with_metadata_it_cannot_read_changes_nothing(bot: SlackBot) -> None:
    ref = await open_dispute(bot)
    assert ref == "WST-2026-0001"
    before = bot.row_counts()
    for metadata in UNREADABLE_METADATA:
        response = await bot.submit(
            "action:add_note",
            {"text": text("We spoke on the phone.")},
            user_id=BEN,
            private_metadata=metadata,
            view_id="VNOTE",
        )
        answer = await response.json()
        await bot.deliver()
        assert answer["response_action"] == "update", metadata
        assert check_view(answer["view"]) == []
        assert "nothing was saved" in json.dumps(answer["view"])
    assert bot.row_counts() == before


async def test_an_action_form_of_an_action_that_no_longer_exists_changes_nothing(
    bot: SlackBot,
) -> None:
    ref = await open_dispute(bot)
    before = bot.row_counts()
    answer = await (
        await bot.submit(
            "action:fast_track",
            {"text": text("Please hurry.")},
            user_id=BEN,
            private_metadata=json.dumps({"ref": ref}),
        )
    ).json()
    assert answer["response_action"] == "update" and "nothing was saved" in json.dumps(answer)
    assert bot.row_counts() == before


async def test_an_action_form_missing_its_questions_comes_back_to_be_filled_in(
    bot: SlackBot,
) -> None:
    ref = await open_dispute(bot)
    before = bot.row_counts()
    answer = await (
        await bot.submit(
            "action:escalate",
            {"why": text("An older form's question.")},
            user_id=BEN,
            private_metadata=json.dumps({"ref": ref}),
        )
    ).json()
    assert answer["response_action"] == "update"
    view = answer["view"]
    assert check_view(view) == [] and view["callback_id"] == "action:escalate"
    assert "reason" in {b.get("block_id") for b in view["blocks"]}
    assert json.loads(view["private_metadata"]) == {"ref": ref}
    assert bot.row_counts() == before


async def test_answers_of_any_type_in_a_form_are_questions_to_answer_again(bot: SlackBot) -> None:
    # Slack sends strings; a hand-made payload may send numbers, lists or objects.
    values = intake_values(
        case_ref={"value": {"type": "plain_text_input", "value": ["CS-1"]}},
        immediate_risk={"value": {"type": "radio_buttons", "selected_option": "yes"}},
        disagreement_date={"value": {"type": "datepicker", "selected_date": 20261126}},
        scope={"value": {"type": "static_select", "selected_option": {"value": {"x": 1}}}},
    )
    response = await bot.submit("intake", values, user_id=AMARA, view_id="VTYPES")
    assert response.status == 200
    answer = await response.json()
    assert answer["response_action"] == "errors"
    assert {"immediate_risk", "scope"} <= set(answer["errors"])
    assert bot.disputes() == []


async def test_app_home_for_someone_unknown_and_an_odd_tab_still_answers(bot: SlackBot) -> None:
    for body in (app_home_opened_body("UNOBODY"), app_home_opened_body(AMARA, tab="messages")):
        assert (await bot.post(body)).status == 200
    await bot.deliver()


async def test_an_immediate_risk_change_in_an_odd_view_answers_and_keeps_serving(
    bot: SlackBot,
) -> None:
    view = {"id": "VNOPE", "callback_id": "intake", "private_metadata": "not json", "state": "?"}
    response = await bot.click("value", "", AMARA, view=view)
    assert response.status == 200
    view = {
        "id": "VNOPE",
        "callback_id": "intake",
        "private_metadata": "[]",
        "state": {"values": {"immediate_risk": radio("maybe")}},
    }
    assert (await bot.click("value", "", AMARA, view=view)).status == 200
    await bot.deliver()
    assert (await bot.command("help", user=AMARA)).status == 200


async def test_a_modal_slack_will_not_open_is_explained_and_nothing_is_logged(
    bot: SlackBot,
) -> None:
    # /escalate is answered at once and the modal follows; when Slack then refuses it (the
    # trigger expired on a slow day), the person is told privately to try again.
    bot.api.fail_next("views.open", "expired_trigger_id")
    before = bot.row_counts()["disputes"]
    response = await bot.command("", user=AMARA, trigger="T-late")
    assert response.status == 200 and await response.text() == ""
    assert bot.api.views == []  # asked for, refused
    (said,) = bot.api.responses
    assert said["response_type"] == "ephemeral"
    assert "did not open the form" in said["text"] and "/escalate again" in said["text"]
    assert bot.row_counts()["disputes"] == before
    # The next /escalate opens it.
    assert (await bot.command("", user=AMARA, trigger="T-again")).status == 200
    refused, opened = bot.api.calls_to("views.open")
    assert (refused["trigger_id"], opened["trigger_id"]) == ("T-late", "T-again")
    assert len(bot.api.views) == 1
