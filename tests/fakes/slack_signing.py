"""Requests as Slack sends them to the bot: signed bodies for slash commands, button presses,
modal submissions and Events API callbacks.

Slack signs each request with the app's signing secret:
``X-Slack-Signature = "v0=" + hex(HMAC_SHA256(secret, f"v0:{timestamp}:{body}"))`` and sends the
timestamp in ``X-Slack-Request-Timestamp``. Bolt rejects a bad signature, or a timestamp more
than five minutes from its own clock (real time, not the bot's FakeClock), with 401.

Usage with aiohttp's test client::

    body = slash_command_body(text="status ESC-1")
    await client.post("/slack/events", data=body, headers=signed_headers(SECRET, body))
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

TEAM_ID = "T0TEST"
TEAM_DOMAIN = "partnership"
API_APP_ID = "A0TEST"
USER_ID = "U0ALICE"
CHANNEL_ID = "C0GENERAL"
TRIGGER_ID = "1337.42.abcdef0123456789"
RESPONSE_URL = "https://hooks.slack.com/commands/T0TEST/1/fake-response-url"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Slack-Signature`` value for this body and timestamp."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    body: bytes,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
) -> dict[str, str]:
    """Slack's signature headers for ``body``, plus its Content-Type.

    ``timestamp`` defaults to now (Bolt compares it with the real clock). ``content_type``
    defaults to JSON for a body starting with ``{`` (Events API) and to a form otherwise
    (slash commands and interactivity payloads), as Slack sends them.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    if content_type is None:
        content_type = JSON if body.lstrip().startswith(b"{") else FORM
    return {
        "X-Slack-Signature": signature(secret, body, ts),
        "X-Slack-Request-Timestamp": str(ts),
        "Content-Type": content_type,
    }


def slash_command_body(
    command: str = "/escalate",
    text: str = "",
    user_id: str = USER_ID,
    trigger_id: str = TRIGGER_ID,
    response_url: str = RESPONSE_URL,
    *,
    channel_id: str = CHANNEL_ID,
    channel_name: str = "general",
    user_name: str = "alice",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
) -> bytes:
    """A slash command as Slack posts it: form-encoded fields."""
    fields = {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return urlencode(fields).encode()


def _payload_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def block_actions_body(payload: dict[str, Any]) -> bytes:
    """A button press (or other block action): a form with ``payload=<json>``.

    ``type`` defaults to ``block_actions``; see :func:`block_actions_payload` for a whole one.
    """
    return _payload_body({"type": "block_actions", **payload})


def view_submission_body(payload: dict[str, Any]) -> bytes:
    """A modal submission: a form with ``payload=<json>``.

    ``type`` defaults to ``view_submission``; see :func:`view_submission_payload`.
    """
    return _payload_body({"type": "view_submission", **payload})


def block_actions_payload(
    action_id: str,
    value: str | None = None,
    *,
    block_id: str = "actions",
    user_id: str = USER_ID,
    channel_id: str | None = None,
    message_ts: str | None = "1700000000.000100",
    message: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    trigger_id: str = TRIGGER_ID,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    response_url: str = RESPONSE_URL,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a button pressed in a message (or, with ``view``, in a
    modal or the Home tab), shaped like Slack's. ``channel_id`` defaults to the user's DM with
    the bot as FakeSlackApi names it (``"D" + user_id``)."""
    action: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": "Button", "emoji": True},
        "action_ts": f"{time.time():.6f}",
    }
    if value is not None:
        action["value"] = value
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": api_app_id,
        "token": "legacy-verification-token",
        "trigger_id": trigger_id,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "is_enterprise_install": False,
        "actions": [action],
    }
    channel_id = channel_id or "D" + user_id
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id", "V0TEST")}
        payload["view"] = view
    else:
        payload["container"] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel_id, "name": "directmessage"}
        payload["message"] = message or {
            "type": "message",
            "ts": message_ts,
            "text": "",
            "user": "U0BOT",
            "bot_id": "B0BOT",
        }
        payload["response_url"] = response_url
    return payload


def view_submission_payload(
    callback_id: str,
    values: dict[str, dict[str, Any]],
    *,
    private_metadata: str = "",
    view_id: str = "V0TEST",
    user_id: str = USER_ID,
    trigger_id: str = TRIGGER_ID,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
) -> dict[str, Any]:
    """A ``view_submission`` payload. ``values`` is ``view.state.values``:
    ``{block_id: {action_id: {"type": "plain_text_input", "value": "..."}}}``."""
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "api_app_id": api_app_id,
        "token": "legacy-verification-token",
        "trigger_id": trigger_id,
        "is_enterprise_install": False,
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": values},
            "hash": "1700000000.abcdef01",
            "root_view_id": view_id,
            "app_id": api_app_id,
            "bot_id": "B0BOT",
            "title": {"type": "plain_text", "text": "Escalation"},
            "blocks": [],
        },
        "response_urls": [],
    }


def event_callback_body(
    event: dict[str, Any],
    *,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    event_id: str = "Ev0TEST",
    event_time: int | None = None,
) -> bytes:
    """An Events API callback (JSON), e.g. ``{"type": "app_home_opened", "user": "U0ALICE",
    "channel": "D0ALICE", "tab": "home"}``."""
    body = {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": "U0BOT",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def app_home_opened_body(user_id: str = USER_ID, *, tab: str = "home", **kwargs: Any) -> bytes:
    """The ``app_home_opened`` event for ``user_id``."""
    event = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id,
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }
    return event_callback_body(event, **kwargs)
