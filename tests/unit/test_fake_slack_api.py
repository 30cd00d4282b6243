"""The fake Slack Web API (tests/fakes/slack_api.py) behaves like Slack, so tests can trust it.

Each test drives it with slack_sdk's real AsyncWebClient over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from fakes.slack_api import FakeSlackApi, check_blocks
from fakes.slack_signing import (
    app_home_opened_body,
    block_actions_body,
    block_actions_payload,
    signed_headers,
    slash_command_body,
    view_submission_body,
    view_submission_payload,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, SectionBlock
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

TOKEN = "xoxb-test"
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
async def api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlackApi]:
    # slack_sdk sends even 127.0.0.1 requests through HTTPS_PROXY when it is set.
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    async with FakeSlackApi(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def client(api: FakeSlackApi) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=api.base_url)


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def button(text: str, action_id: str, value: str = "v") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }


def modal(title: str = "Escalate", **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "intake",
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [
            {
                "type": "input",
                "block_id": "summary",
                "label": {"type": "plain_text", "text": "What is the disagreement?"},
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
            }
        ],
        **extra,
    }


async def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


# --- Basics ----------------------------------------------------------------------------------


async def test_listens_on_loopback_with_the_base_url_slack_sdk_needs(api: FakeSlackApi) -> None:
    assert api.base_url == f"http://127.0.0.1:{api.port}/api/"


async def test_stops_listening_on_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    async with FakeSlackApi() as fake:
        url = fake.base_url
    with pytest.raises(aiohttp.ClientConnectionError):
        await AsyncWebClient(token=TOKEN, base_url=url).auth_test()


async def test_auth_test(client: AsyncWebClient, api: FakeSlackApi) -> None:
    response = await client.auth_test()
    assert response["user_id"] == api.bot_user_id
    assert response["bot_id"] == api.bot_id
    assert response["team_id"] == api.team_id


async def test_post_a_message_and_read_it_back(client: AsyncWebClient, api: FakeSlackApi) -> None:
    blocks = [SectionBlock(text="*ESC-1* needs your reply by Friday 27 November 2026")]
    metadata = {"event_type": "escalation_bot_message", "event_payload": {"key": "k1"}}
    posted = await client.chat_postMessage(
        channel="C1", text="ESC-1 needs your reply", blocks=blocks, metadata=metadata
    )
    assert posted["channel"] == "C1"
    second = await client.chat_postMessage(channel="C1", text="second")
    assert float(second["ts"]) > float(posted["ts"])
    assert posted["ts"] == "1700000000.000100"

    history = await client.conversations_history(channel="C1", include_all_metadata=True)
    messages = history["messages"]
    assert [m["ts"] for m in messages] == [second["ts"], posted["ts"]]  # newest first
    assert messages[1]["text"] == "ESC-1 needs your reply"
    assert messages[1]["blocks"][0]["text"]["text"].startswith("*ESC-1*")
    assert messages[1]["metadata"] == metadata
    assert messages[1]["bot_id"] == api.bot_id

    without = await client.conversations_history(channel="C1")
    assert "metadata" not in without["messages"][1]

    assert [m.text for m in api.messages_in("C1")] == ["ESC-1 needs your reply", "second"]
    assert api.messages[0].metadata == metadata
    assert api.calls_to("chat.postMessage")[0]["channel"] == "C1"
    assert api.violations == []


async def test_thread_replies_are_not_in_history_but_in_replies(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    root = await client.chat_postMessage(channel="C1", text="root")
    reply = await client.chat_postMessage(channel="C1", text="nudge", thread_ts=root["ts"])
    history = await client.conversations_history(channel="C1")
    assert [m["ts"] for m in history["messages"]] == [root["ts"]]
    assert history["messages"][0]["reply_count"] == 1
    replies = await client.conversations_replies(channel="C1", ts=root["ts"])
    assert [m["ts"] for m in replies["messages"]] == [root["ts"], reply["ts"]]
    assert api.messages[1].thread_ts == root["ts"]


async def test_update_a_message(client: AsyncWebClient, api: FakeSlackApi) -> None:
    posted = await client.chat_postMessage(channel="C1", text="before")
    await client.chat_update(channel="C1", ts=posted["ts"], text="after")
    assert api.messages[0].text == "after"
    assert api.messages[0].updates == 1
    error = await error_of(client.chat_update(channel="C1", ts="1.000000", text="x"))
    assert error.response["error"] == "message_not_found"
    assert api.violations == []


async def test_dm_channels_and_ephemerals(client: AsyncWebClient, api: FakeSlackApi) -> None:
    opened = await client.conversations_open(users="U0ALICE")
    again = await client.conversations_open(users=["U0ALICE"])
    assert opened["channel"]["id"] == again["channel"]["id"] == "DU0ALICE"
    await client.chat_postEphemeral(channel="C1", user="U0ALICE", text="only you")
    assert api.ephemerals[0].user == "U0ALICE"
    assert api.ephemerals[0].text == "only you"


async def test_users(client: AsyncWebClient, api: FakeSlackApi) -> None:
    api.add_user("U0ALICE", "alice@example.org", "Alice Example")
    found = await client.users_lookupByEmail(email="Alice@Example.org")
    assert found["user"]["id"] == "U0ALICE"
    info = await client.users_info(user="U0ALICE")
    assert info["user"]["real_name"] == "Alice Example"
    assert info["user"]["profile"]["email"] == "alice@example.org"
    assert (await error_of(client.users_lookupByEmail(email="nobody@example.org"))).response[
        "error"
    ] == "users_not_found"
    assert (await error_of(client.users_info(user="U0NOBODY"))).response[
        "error"
    ] == "user_not_found"
    assert api.violations == []


async def test_views(client: AsyncWebClient, api: FakeSlackApi) -> None:
    opened = await client.views_open(trigger_id="t1", view=modal())
    view = opened["view"]
    assert view["id"].startswith("V")
    assert view["hash"]
    assert view["callback_id"] == "intake"
    updated = await client.views_update(view_id=view["id"], hash=view["hash"], view=modal("Done"))
    assert updated["view"]["id"] == view["id"]
    assert updated["view"]["hash"] != view["hash"]
    stale = await error_of(client.views_update(view_id=view["id"], hash=view["hash"], view=modal()))
    assert stale.response["error"] == "hash_conflict"
    home = {"type": "home", "blocks": [section("Your disagreements")]}
    await client.views_publish(user_id="U0ALICE", view=home)
    assert api.home_view("U0ALICE") is not None
    assert [v.method for v in api.views] == ["views.open", "views.update", "views.publish"]
    assert api.views[0].trigger_id == "t1"
    assert api.violations == []


async def test_a_trigger_id_works_once(client: AsyncWebClient, api: FakeSlackApi) -> None:
    await client.views_open(trigger_id="t1", view=modal())
    error = await error_of(client.views_open(trigger_id="t1", view=modal()))
    assert error.response["error"] == "exchanged_trigger_id"


# --- Requests Slack would refuse ---------------------------------------------------------------


async def test_wrong_token_is_invalid_auth(api: FakeSlackApi) -> None:
    wrong = AsyncWebClient(token="xoxb-wrong", base_url=api.base_url)
    error = await error_of(wrong.chat_postMessage(channel="C1", text="hi"))
    assert error.response["error"] == "invalid_auth"
    assert api.messages == []


async def test_no_token_is_not_authed(api: FakeSlackApi) -> None:
    error = await error_of(AsyncWebClient(base_url=api.base_url).auth_test())
    assert error.response["error"] == "not_authed"


async def test_missing_channel_fails(client: AsyncWebClient, api: FakeSlackApi) -> None:
    error = await error_of(client.api_call("chat.postMessage", json={"text": "hi"}))
    assert error.response["error"] == "invalid_arguments"
    assert api.messages == []
    assert api.violations[0].method == "chat.postMessage"


async def test_no_text_and_no_blocks_fails(client: AsyncWebClient) -> None:
    error = await error_of(client.api_call("chat.postMessage", json={"channel": "C1"}))
    assert error.response["error"] == "no_text"


async def test_form_encoded_arguments_with_json_strings(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    # The form style (as slack_sdk's params= or a browser would send): blocks as a JSON string.
    await client.api_call(
        "chat.postMessage",
        data={"channel": "C1", "text": "hi", "blocks": json.dumps([section("hi")])},
    )
    assert api.messages[0].blocks == [section("hi")]
    error = await error_of(
        client.api_call("chat.postMessage", data={"channel": "C1", "blocks": "[not json"})
    )
    assert error.response["error"] == "invalid_blocks_format"


async def test_51_blocks_are_rejected_and_recorded(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    blocks = [section(f"line {i}") for i in range(51)]
    error = await error_of(client.chat_postMessage(channel="C1", text="x", blocks=blocks))
    assert error.response["error"] == "invalid_blocks"
    assert any("no more than 50" in e for e in error.response["errors"])
    assert api.messages == []
    assert [v.error for v in api.violations] == ["invalid_blocks"]
    await client.chat_postMessage(channel="C1", text="x", blocks=blocks[:50])


async def test_a_button_with_80_characters_of_text_is_rejected(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    blocks = [{"type": "actions", "elements": [button("B" * 80, "ack")]}]
    error = await error_of(client.chat_postMessage(channel="C1", text="x", blocks=blocks))
    assert error.response["error"] == "invalid_blocks"
    assert api.violations


async def test_duplicate_action_ids_in_a_block_are_rejected(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    blocks = [{"type": "actions", "elements": [button("Yes", "ack"), button("No", "ack")]}]
    error = await error_of(client.chat_postMessage(channel="C1", text="x", blocks=blocks))
    assert error.response["error"] == "invalid_blocks"
    assert any("action_id 'ack' is not unique" in e for e in api.violations[0].messages)


async def test_duplicate_block_ids_are_rejected(client: AsyncWebClient) -> None:
    blocks = [section("a", "same"), section("b", "same")]
    error = await error_of(client.chat_postMessage(channel="C1", text="x", blocks=blocks))
    assert any("block_id 'same' is not unique" in e for e in error.response["errors"])


async def test_the_same_action_id_in_different_blocks_is_allowed(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    # Slack wants an action_id unique within its block only (one "ack" button per dispute).
    blocks = [
        {"type": "actions", "block_id": "ESC-1", "elements": [button("Acknowledge", "ack")]},
        {"type": "actions", "block_id": "ESC-2", "elements": [button("Acknowledge", "ack")]},
    ]
    await client.chat_postMessage(channel="C1", text="x", blocks=blocks)
    assert api.violations == []


async def test_blocks_built_with_slack_sdk_models_pass(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    blocks = [
        SectionBlock(block_id="s", text="Please acknowledge ESC-1"),
        ActionsBlock(
            block_id="a",
            elements=[
                ButtonElement(text="Acknowledge", action_id="ack", value="ESC-1", style="primary")
            ],
        ),
    ]
    await client.chat_postMessage(channel="C1", text="Please acknowledge ESC-1", blocks=blocks)
    assert api.violations == []


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ([section("x" * 3001)], "at most 3000"),
        ([section("")], "at least 1"),
        ([{"type": "no_such_block"}], "unknown block type"),
        ([{"type": "actions", "elements": [button(str(i), f"b{i}") for i in range(26)]}], "25"),
        ([{"type": "actions", "elements": [button("x", "a" * 256)]}], "255"),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "static_select",
                            "action_id": "pick",
                            "placeholder": {"type": "plain_text", "text": "Pick"},
                            "options": [
                                {"text": {"type": "plain_text", "text": str(i)}, "value": str(i)}
                                for i in range(101)
                            ],
                        }
                    ],
                }
            ],
            "no more than 100",
        ),
    ],
    ids=["section-3001", "empty-text", "unknown-type", "26-elements", "long-action-id", "101-opts"],
)
def test_block_limits(blocks: list[dict[str, Any]], expected: str) -> None:
    errors = check_blocks(blocks, 50)
    assert errors
    assert any(expected in e for e in errors), errors


async def test_text_over_40000_characters_is_rejected(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    error = await error_of(client.chat_postMessage(channel="C1", text="x" * 40_001))
    assert error.response["error"] == "msg_too_long"
    await client.chat_postMessage(channel="C1", text="x" * 40_000)
    assert len(api.messages) == 1


async def test_bad_metadata_is_rejected(client: AsyncWebClient) -> None:
    error = await error_of(
        client.chat_postMessage(channel="C1", text="x", metadata={"event_payload": {}})
    )
    assert error.response["error"] == "invalid_metadata_format"


async def test_a_modal_title_of_25_characters_is_rejected(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    error = await error_of(client.views_open(trigger_id="t1", view=modal("T" * 25)))
    assert error.response["error"] == "invalid_arguments"
    assert api.views == []
    assert api.violations[0].method == "views.open"
    await client.views_open(trigger_id="t2", view=modal("T" * 24))


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (modal(private_metadata="m" * 3001), "private_metadata"),
        (modal(blocks=[section(str(i)) for i in range(101)]), "no more than 100"),
        ({**modal(), "submit": None}, "submit"),
        ({"type": "home", "blocks": [section("x")]}, "view type must be modal"),
    ],
    ids=["metadata-3001", "101-blocks", "input-without-submit", "home-in-views-open"],
)
async def test_bad_views_are_rejected(
    client: AsyncWebClient, view: dict[str, Any], expected: str
) -> None:
    view = {k: v for k, v in view.items() if v is not None}
    error = await error_of(client.views_open(trigger_id="t", view=view))
    assert error.response["error"] == "invalid_arguments"
    assert any(expected in m for m in error.response["response_metadata"]["messages"])


async def test_an_unfaked_method_is_a_violation(client: AsyncWebClient, api: FakeSlackApi) -> None:
    error = await error_of(client.api_call("chat.scheduleMessage", json={"channel": "C1"}))
    assert error.response["error"] == "unknown_method"
    assert api.violations[0].error == "unknown_method"


# --- Failure injection -----------------------------------------------------------------------


async def test_fail_next_429_has_retry_after(client: AsyncWebClient, api: FakeSlackApi) -> None:
    api.fail_next("chat.postMessage", error="ratelimited", status=429, retry_after=30)
    error = await error_of(client.chat_postMessage(channel="C1", text="hi"))
    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    assert error.response.headers["Retry-After"] == "30"
    assert api.messages == []
    await client.chat_postMessage(channel="C1", text="hi")  # only the next call fails
    assert len(api.messages) == 1
    assert api.violations == []


async def test_fail_next_with_any_error(client: AsyncWebClient, api: FakeSlackApi) -> None:
    api.fail_next("conversations.open", error="user_disabled", times=2)
    for _ in range(2):
        error = await error_of(client.conversations_open(users="U1"))
        assert error.response.status_code == 200
        assert error.response["error"] == "user_disabled"
    await client.conversations_open(users="U1")


async def test_drop_next_does_the_work_but_loses_the_answer(api: FakeSlackApi) -> None:
    no_retries = AsyncWebClient(token=TOKEN, base_url=api.base_url, retry_handlers=[])
    api.drop_next("chat.postMessage")
    with pytest.raises(aiohttp.ClientError):
        await no_retries.chat_postMessage(channel="C1", text="maybe sent")
    assert [m.text for m in api.messages] == ["maybe sent"]
    await no_retries.chat_postMessage(channel="C1", text="next")


async def test_slack_sdk_retries_a_dropped_post_by_default(
    client: AsyncWebClient, api: FakeSlackApi
) -> None:
    # slack_sdk's default AsyncConnectionErrorRetryHandler resends after a disconnect: when
    # Slack had already posted the message, it is posted twice.
    api.drop_next("chat.postMessage")
    await client.chat_postMessage(channel="C1", text="once?")
    assert [m.text for m in api.messages] == ["once?", "once?"]


# --- Signing helpers ---------------------------------------------------------------------------


def test_signed_headers_verify_with_slack_sdk() -> None:
    body = slash_command_body(text="status ESC-1", user_id="U0BOB")
    headers = signed_headers("secret", body, timestamp=1_700_000_000)
    assert headers["X-Slack-Request-Timestamp"] == "1700000000"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    verifier = SignatureVerifier("secret", clock=_FixedClock(1_700_000_010))
    assert verifier.is_valid_request(body, headers)
    assert not SignatureVerifier("other", clock=_FixedClock(1_700_000_010)).is_valid_request(
        body, headers
    )
    fields = parse_qs(body.decode())
    assert fields["command"] == ["/escalate"]
    assert fields["text"] == ["status ESC-1"]
    assert fields["user_id"] == ["U0BOB"]


def test_interactivity_bodies_are_payload_forms() -> None:
    actions = block_actions_body(block_actions_payload("ack", "ESC-1"))
    payload = json.loads(parse_qs(actions.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["actions"][0]["action_id"] == "ack"
    assert payload["actions"][0]["value"] == "ESC-1"
    submission = view_submission_body(
        view_submission_payload("intake", {"summary": {"value": {"value": "text"}}})
    )
    payload = json.loads(parse_qs(submission.decode())["payload"][0])
    assert payload["type"] == "view_submission"
    assert payload["view"]["callback_id"] == "intake"
    assert json.loads(parse_qs(block_actions_body({}).decode())["payload"][0]) == {
        "type": "block_actions"
    }
    event = app_home_opened_body("U0ALICE")
    assert signed_headers("s", event)["Content-Type"] == "application/json"
    assert json.loads(event)["event"]["type"] == "app_home_opened"


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


async def test_checked_later_a_bad_view_and_bad_blocks_are_still_violations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    too_long = "x" * 3001  # a section's text is at most 3,000 characters
    bad = [{"type": "section", "text": {"type": "mrkdwn", "text": too_long}}]
    async with FakeSlackApi(token=TOKEN, check_later=True) as fake:
        client = AsyncWebClient(token=TOKEN, base_url=fake.base_url)
        await client.views_open(
            trigger_id="T1",
            view={"type": "modal", "title": {"type": "plain_text", "text": "X"}, "blocks": bad},
        )
        await client.chat_postMessage(channel="C1", text="x", blocks=bad)
        assert fake.violations == []  # answered at once, as Slack would a good call
        assert fake.check_deferred() == 2
        assert [v.method for v in fake.violations] == [
            "checked later: view",
            "checked later: blocks",
        ]
        assert fake.check_deferred() == 0  # each checked once
