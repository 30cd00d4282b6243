"""Sending to Slack: direct messages, the dispute thread in the partnership channel.

The outbox calls `send`; failures become SendFailed so the outbox owns retries (a 429's
Retry-After included). Every post carries its outbox key as message metadata, so after a
crash mid-send the next sender can see that the post already went and not post it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.base import Delivered, SendFailed
from bot.adapters.slack.blocks import fallback_text, message_blocks
from bot.directory import Directory, Person
from bot.messages import Message

log = logging.getLogger(__name__)

METADATA_EVENT = "escalation_bot_message"
# Errors that no retry will cure: the outbox parks the message and tells the admins.
PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "user_not_found",
    "users_not_found",
    "user_disabled",
    "cannot_dm_bot",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "missing_scope",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "no_text",
}


class SlackPlatform:
    """The outbox's way into Slack."""

    name = "slack"

    def __init__(
        self,
        client: AsyncWebClient,
        directory: Callable[[], Directory],
        channels: dict[str, str],
        remember: Callable[[Person, str], object] | None = None,
    ) -> None:
        self.client = client
        self.directory = directory
        self.channels = channels  # partnership channel name -> Slack channel id
        self.remember = remember
        self._dm: dict[str, str] = {}

    def can_reach(self, message: Message) -> bool:
        """A configured channel, or a directory person with a Slack id or an email to look up."""
        r = message.recipient
        if r.kind == "channel":
            return r.id in self.channels
        person = self.directory().get(r.id)
        if person is None:
            return False
        # By email only when nothing says the person is on Teams instead.
        return bool(person.slack_id or (person.email and not person.teams_id))

    async def user_id(self, person: Person) -> str:
        """The person's Slack user id, found by email the first time and remembered."""
        if person.slack_id:
            return person.slack_id
        assert person.email is not None
        response = await self.client.users_lookupByEmail(email=person.email)
        user_id = str(response["user"]["id"])
        if self.remember is not None:
            self.remember(person, user_id)
        return user_id

    async def _channel_for(self, message: Message) -> str:
        r = message.recipient
        if r.kind == "channel":
            return self.channels[r.id]
        if r.id in self._dm:
            return self._dm[r.id]
        person = self.directory().get(r.id)
        assert person is not None
        opened = await self.client.conversations_open(users=await self.user_id(person))
        channel = str(opened["channel"]["id"])
        self._dm[r.id] = channel
        return channel

    async def send(
        self, message: Message, *, thread_id: str | None, maybe_sent: bool = False
    ) -> Delivered:
        """Post (or, for a thread root that exists, update) one message."""
        try:
            channel = await self._channel_for(message)
            if maybe_sent:
                in_thread = thread_id if message.kind == "thread" else None
                earlier = await self._already_posted(channel, message.key, in_thread)
                if earlier is not None:
                    return Delivered(earlier, earlier if message.kind == "thread_root" else None)
            blocks = [b.to_dict() for b in message_blocks(message)]
            text = fallback_text(message)
            if message.kind == "thread_root" and thread_id:
                await self.client.chat_update(
                    channel=channel, ts=thread_id, text=text, blocks=blocks
                )
                return Delivered(thread_id, thread_id)
            response = await self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                thread_ts=thread_id if message.kind == "thread" else None,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"key": message.key}},
                unfurl_links=False,
                unfurl_media=False,
            )
            ts = str(response["ts"])
            return Delivered(ts, ts if message.kind == "thread_root" else None)
        except SlackApiError as exc:
            raise _failure(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendFailed(f"Slack could not be reached: {exc.__class__.__name__}") from exc

    async def _already_posted(self, channel: str, key: str, thread_ts: str | None) -> str | None:
        """The ts of a recent post carrying this outbox key, if the last sender got that far."""
        if thread_ts:
            # Thread replies are not in the channel's history, only in the thread's.
            response = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=100, include_all_metadata=True
            )
        else:
            response = await self.client.conversations_history(
                channel=channel, limit=50, include_all_metadata=True
            )
        items: list[dict[str, Any]] = response.get("messages", [])
        for item in items:
            metadata: dict[str, Any] = item.get("metadata") or {}
            if metadata.get("event_payload", {}).get("key") == key:
                return str(item["ts"])
        return None


def _failure(exc: SlackApiError) -> SendFailed:
    response = exc.response
    error = str(response.get("error", "unknown_error")) if response is not None else "unknown"
    status = getattr(response, "status_code", None)
    if status == 429 or error == "ratelimited":
        retry = (getattr(response, "headers", None) or {}).get("Retry-After")
        return SendFailed("Slack rate limit", retry_after=float(retry) if retry else 30.0)
    return SendFailed(f"Slack said {error}", permanent=error in PERMANENT)
