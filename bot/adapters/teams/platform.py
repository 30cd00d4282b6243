"""Sending to Microsoft Teams: proactive cards from stored conversation references.

The outbox calls `send`. Teams lets a bot write only where it has been before: a person's
personal chat once they opened the bot (or a chat the bot may open because it met them in a
team), and a channel of a team the bot is in. Those references are kept up to date by every
turn (store/conversation_refs.py); `can_reach` is true only when one exists. A dispute's channel
thread is a root post whose activity id is the thread id: the root is updated in place, and
updates go in its reply chain (`{channel};messageid={root}`). Failures become SendFailed, a
429's Retry-After included: the connector client itself never retries (DESIGN.md). While
sending, the store is read in worker threads, off the event loop. May import botbuilder, the
domain and the store.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    Attachment,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
    ErrorResponseException,
)
from msrest.exceptions import ClientException

from bot.adapters.base import Delivered, SendFailed
from bot.adapters.teams.cards import CONTENT_TYPE, Mention, escape, message_card
from bot.adapters.teams.clients import SentCard
from bot.clock import Clock
from bot.directory import Directory, Person
from bot.messages import Message, plain
from store import conversation_refs as refs
from store.repository import Store

log = logging.getLogger(__name__)

PLATFORM = "teams"
CHANNEL_ID = "msteams"
WAITING_TITLE = "Still to open the escalation bot in Teams"
MAX_NAMED = 15
# Teams' answers that no retry will cure: the outbox parks the message and tells the admins.
PERMANENT_STATUS = {400, 403, 404, 413}


def user_key(teams_id: str) -> str:
    """The key of a person's personal chat with the bot."""
    return f"user:{teams_id}"


def member_key(teams_id: str) -> str:
    """The key of a person met in a team or group chat (the bot may open a chat with them)."""
    return f"member:{teams_id}"


def channel_key(channel_id: str) -> str:
    """The key of a team channel."""
    return f"channel:{channel_id}"


def base_channel_id(conversation_id: str) -> str:
    """A channel conversation id without the `;messageid=` of the thread it came from."""
    return conversation_id.split(";", 1)[0]


def to_reference(data: dict[str, Any]) -> Any:
    """A stored reference as Bot Framework's ConversationReference."""
    return ConversationReference().deserialize(data)


def from_reference(reference: Any) -> dict[str, Any]:
    """A ConversationReference as JSON for the store."""
    data: dict[str, Any] = reference.serialize()
    data.pop("activityId", None)  # proactive messages start afresh, not as replies
    return data


def card_activity(card: dict[str, Any], summary: str) -> Any:
    """A message activity carrying one Adaptive Card."""
    return Activity(
        type=ActivityTypes.message,
        attachments=[Attachment(content_type=CONTENT_TYPE, content=SentCard(card))],
        summary=plain(summary)[:200],
    )


class TeamsPlatform:
    """The outbox's way into Teams."""

    name = PLATFORM

    def __init__(
        self,
        adapter: CloudAdapter,
        app_id: str,
        store: Store,
        directory: Callable[[], Directory],
        channels: dict[str, str],
        clock: Clock,
        *,
        tenant_id: str | None = None,
        waiting: Callable[[Message], list[Person]] | None = None,
    ) -> None:
        self.adapter = adapter
        self.app_id = app_id
        self.store = store
        self.directory = directory
        self.channels = channels  # partnership channel name -> Teams channel id
        self.clock = clock
        self.tenant_id = tenant_id
        self.waiting = waiting
        # Who and what was found reachable: references are never deleted, so a yes stays a
        # yes, and the outbox's check before each send (on the event loop) reads the store
        # once per recipient, not once per message.
        self._reachable: set[tuple[str, str]] = set()

    # ---- who can be reached ----------------------------------------------------------------

    def can_reach(self, message: Message) -> bool:
        """A channel the bot is in, or a person it has met (personally or in a team)."""
        r = message.recipient
        if r.kind == "channel":
            channel = self.channels.get(r.id)
            if channel is None:
                return False
            known = ("channel", channel)
            if known not in self._reachable and self.channel_reference(channel) is None:
                return False
        else:
            person = self.directory().get(r.id)
            if person is None:
                return False
            known = ("person", f"{person.id}\n{person.teams_id or ''}")
            if known not in self._reachable and self.person_reference(person) is None:
                return False
        self._reachable.add(known)
        return True

    def person_reference(self, person: Person) -> tuple[str, dict[str, Any]] | None:
        """The person's personal chat (`user:` key) or, failing that, where the bot met them."""
        with self.store.reading() as session:
            known = refs.person_keys(session, PLATFORM, person.id)
            keys = [
                *([user_key(person.teams_id)] if person.teams_id else []),
                *sorted(k for k in known if k.startswith("user:")),
                *([member_key(person.teams_id)] if person.teams_id else []),
                *sorted(k for k in known if k.startswith("member:")),
            ]
            return refs.first_reference(session, PLATFORM, keys)

    def channel_reference(self, channel_id: str) -> dict[str, Any] | None:
        """The channel's stored reference; or one made from any other (same service URL)."""
        with self.store.reading() as session:
            stored = refs.reference(session, PLATFORM, channel_key(channel_id))
            if stored is not None:
                return stored
            other = refs.any_reference(session, PLATFORM, "channel:") or refs.any_reference(
                session, PLATFORM, "user:"
            )
        if other is None:
            return None
        tenant = (other.get("conversation") or {}).get("tenantId") or self.tenant_id
        return {
            **other,
            "conversation": {
                "id": channel_id,
                "conversationType": "channel",
                "isGroup": True,
                **({"tenantId": tenant} if tenant else {}),
            },
            "user": None,
        }

    # ---- sending ---------------------------------------------------------------------------

    def render(self, message: Message) -> dict[str, Any]:
        """The card for a message; channel roots and digests name who still has to open the bot."""
        extra: list[tuple[str, str]] = []
        mentions: list[Mention] = []
        if (
            self.waiting is not None
            and message.recipient.kind == "channel"
            and message.kind in ("thread_root", "digest")
        ):
            people = self.waiting(message)
            names = []
            d = self.directory()
            for person in people[:MAX_NAMED]:
                agency = escape(d.agency_name(person.agency))
                if person.teams_id:
                    mention = Mention(person.teams_id, person.name)
                    mentions.append(mention)
                    names.append(f"{mention.text} ({agency})")
                else:
                    names.append(f"{escape(person.name)} ({agency})")
            if names:
                more = f" and {len(people) - MAX_NAMED} more" if len(people) > MAX_NAMED else ""
                extra.append(
                    (
                        WAITING_TITLE,
                        f"{', '.join(names)}{more}. The bot cannot message anyone first in Teams: "
                        "please open a chat with the escalation bot once (Apps, then search for "
                        "it), so it can send you what is for you privately.",
                    )
                )
        return message_card(message, mentions=mentions, extra_facts=extra)

    async def send(
        self, message: Message, *, thread_id: str | None, maybe_sent: bool = False
    ) -> Delivered:
        """Post one card; a thread root that exists is updated in place.

        Teams offers a bot no way to look for a message it may already have posted, so after
        a crash mid-send (`maybe_sent`) a post can show twice; a root update cannot.
        """
        try:
            card, target = await asyncio.to_thread(self._card_and_target, message)
            activity = card_activity(card, message.text)
            if message.recipient.kind == "person":
                return await self._to_person(activity, target)
            return await self._to_channel(message, activity, thread_id, target)
        except SendFailed:
            raise
        except ErrorResponseException as exc:
            raise failure(exc, self.clock.now()) from exc
        except (ClientException, OSError, TimeoutError) as exc:
            raise SendFailed(f"Teams could not be reached: {exc.__class__.__name__}") from exc
        except PermissionError as exc:
            # The bot's own token could not be had (wrong password, or the sign-in service).
            raise SendFailed(f"Teams sign-in failed: {str(exc)[:200]}") from exc

    def _card_and_target(self, message: Message) -> tuple[dict[str, Any], _Target]:
        """The card (naming who has still to open the bot) and where it goes: both read the
        store, so `send` runs this in a worker thread."""
        card = self.render(message)
        r = message.recipient
        if r.kind == "person":
            person = self.directory().get(r.id)
            found = self.person_reference(person) if person is not None else None
            return card, _Target(person=person, found=found)
        channel_id = self.channels.get(r.id)
        data = self.channel_reference(channel_id) if channel_id else None
        return card, _Target(channel_id=channel_id, channel=data)

    async def _to_person(self, activity: Any, target: _Target) -> Delivered:
        person, found = target.person, target.found
        if person is None or found is None:
            raise SendFailed("nobody in Teams to send this to", permanent=True)
        key, data = found
        reference = to_reference(data)
        if key.startswith("member:"):
            reference = await self.open_personal_chat(reference, person_id=person.id)
        message_id = await self.post(reference, activity)
        return Delivered(message_id)

    async def _to_channel(
        self, message: Message, activity: Any, thread_id: str | None, target: _Target
    ) -> Delivered:
        channel_id, data = target.channel_id, target.channel
        if channel_id is None or data is None:
            raise SendFailed("the bot is not in this Teams channel", permanent=True)
        reference = to_reference(data)
        reference.conversation.id = channel_id
        if message.kind == "thread_root" and thread_id:
            await self.update(reference, thread_id, activity)
            return Delivered(thread_id, thread_id)
        if message.kind == "thread" and thread_id:
            reference.conversation.id = f"{channel_id};messageid={thread_id}"
        message_id = await self.post(reference, activity)
        return Delivered(message_id, message_id if message.kind == "thread_root" else None)

    async def post(self, reference: Any, activity: Any) -> str | None:
        """Send an activity to the reference's conversation; the new message's id."""
        result: dict[str, Any] = {}

        async def callback(turn: TurnContext) -> None:
            try:
                client = turn.turn_state[self.adapter.BOT_CONNECTOR_CLIENT_KEY]
                outgoing = TurnContext.apply_conversation_reference(activity, reference)
                outgoing.reply_to_id = None
                response = await client.conversations.send_to_conversation(
                    reference.conversation.id, outgoing
                )
                result["id"] = getattr(response, "id", None)
            except Exception as exc:  # handed back below: the adapter would swallow it
                result["error"] = exc

        await self._continue(reference, callback, result)
        return result.get("id")

    async def update(self, reference: Any, activity_id: str, activity: Any) -> None:
        """Replace a message the bot posted earlier."""
        result: dict[str, Any] = {}

        async def callback(turn: TurnContext) -> None:
            try:
                client = turn.turn_state[self.adapter.BOT_CONNECTOR_CLIENT_KEY]
                outgoing = TurnContext.apply_conversation_reference(activity, reference)
                outgoing.id = activity_id
                outgoing.reply_to_id = None
                await client.conversations.update_activity(
                    reference.conversation.id, activity_id, outgoing
                )
            except Exception as exc:
                result["error"] = exc

        await self._continue(reference, callback, result)

    async def _continue(self, reference: Any, callback: Any, result: dict[str, Any]) -> None:
        # The adapter runs the callback as a turn whose errors go to on_turn_error (which
        # would answer into the conversation): the callback keeps them for us instead.
        # A shallow copy, so that the caller's reference keeps its activity id: copied through
        # msrest (serialise, then deserialise) it cost 0.47 ms of the event loop per send.
        continuation = copy.copy(reference)
        continuation.activity_id = None
        await self.adapter.continue_conversation(continuation, callback, self.app_id)
        if "error" in result:
            raise result["error"]

    async def open_personal_chat(self, member: Any, *, person_id: str | None) -> Any:
        """Start a personal chat with someone met in a team, and keep its reference."""
        tenant = tenant_of(member.conversation) or self.tenant_id
        user = ChannelAccount(
            id=member.user.id, name=member.user.name, aad_object_id=member.user.aad_object_id
        )
        parameters = ConversationParameters(
            is_group=False,
            bot=member.bot,
            members=[user],
            tenant_id=tenant,
            channel_data={"tenant": {"id": tenant}} if tenant else None,
        )
        created: dict[str, Any] = {}

        async def callback(turn: TurnContext) -> None:
            created["id"] = turn.activity.conversation.id

        await self.adapter.create_conversation(
            self.app_id,
            callback,
            parameters,
            channel_id=member.channel_id or CHANNEL_ID,
            service_url=member.service_url,
        )
        reference = ConversationReference(
            channel_id=member.channel_id or CHANNEL_ID,
            service_url=member.service_url,
            bot=member.bot,
            user=user,
            conversation=ConversationAccount(
                id=created["id"], conversation_type="personal", tenant_id=tenant
            ),
        )
        aad = user.aad_object_id or user.id
        await asyncio.to_thread(
            self._save_personal, user_key(aad), from_reference(reference), person_id
        )
        return reference

    def _save_personal(self, key: str, reference: dict[str, Any], person_id: str | None) -> None:
        with self.store.unit() as session:
            refs.save_reference(
                session,
                platform=PLATFORM,
                key=key,
                reference=reference,
                person_id=person_id,
                now=self.clock.now(),
            )


@dataclass(frozen=True)
class _Target:
    """Where a message goes, as read from the store: a person (the key and reference found
    for them) or a channel (its reference)."""

    person: Person | None = None
    found: tuple[str, dict[str, Any]] | None = None
    channel_id: str | None = None
    channel: dict[str, Any] | None = None


def tenant_of(conversation: Any) -> str | None:
    """A conversation's tenant: botbuilder maps `tenantID`, Teams sends `tenantId`."""
    if conversation is None:
        return None
    extra = getattr(conversation, "additional_properties", None) or {}
    return getattr(conversation, "tenant_id", None) or extra.get("tenantId")


def failure(exc: Any, now: datetime | None = None) -> SendFailed:
    """What a Bot Connector error means for the outbox."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    code = ""
    error = getattr(getattr(exc, "error", None), "error", None)
    if error is not None:
        code = str(getattr(error, "code", "") or "")
    if status == 429:
        headers = getattr(response, "headers", None) or {}
        return SendFailed(
            "Teams rate limit", retry_after=retry_after(headers.get("Retry-After"), now=now)
        )
    reason = f"Teams said {status}{' ' + code if code else ''}"
    return SendFailed(reason, permanent=status in PERMANENT_STATUS)


def retry_after(value: str | None, *, now: datetime | None = None, default: float = 30.0) -> float:
    """Retry-After in seconds: a number of seconds or an HTTP date."""
    if not value:
        return default
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)
