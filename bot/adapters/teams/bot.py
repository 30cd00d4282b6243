"""The Teams side of the conversation: `escalate`, its card forms, buttons and replies.

Bot Framework's CloudAdapter behind `POST /api/messages`; a message is answered 202 once it is
authenticated, and its turn runs after (bot/adapters/teams/turns.py). The handler only
translates an activity into the neutral conversations (bot/conversation.py) and renders the
answer as a card; the conversation reference of every person and channel is checked on every
turn and saved when it changed, so the outbox can reach them later. Forms and buttons use
Action.Submit, which arrives as a message activity carrying `value`; the card the person
pressed is then updated in place. Database work runs in worker threads (`asyncio.to_thread`),
never on the event loop. There is one `on_error` for every turn. May import botbuilder,
aiohttp, the conversations and the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from botbuilder.core import ActivityHandler, TurnContext, serializer_helper
from botbuilder.core.teams import TeamsInfo
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes, DeliveryModes

from bot.adapters.base import Platform
from bot.adapters.teams import cards
from bot.adapters.teams.clients import KeptClientsAuthentication, quicker_connector_clients
from bot.adapters.teams.platform import (
    PLATFORM,
    TeamsPlatform,
    base_channel_id,
    card_activity,
    channel_key,
    from_reference,
    member_key,
    to_reference,
    user_key,
)
from bot.adapters.teams.reach import waiting_for
from bot.adapters.teams.turns import Turns
from bot.app import Core
from bot.config import Settings
from bot.conversation import Conversations, Reply
from bot.directory import Person
from bot.disputes import Action
from bot.flows.actions import FROM_STAGE
from bot.flows.engine import FlowRunner, Notice
from bot.inflight import InFlight
from bot.messages import BUTTON_LABELS, ActionId, Button
from bot.service import Outcome
from store import conversation_refs as refs

log = logging.getLogger(__name__)

INTAKE_TITLE = "Log a professional disagreement"
INTAKE_INTRO = (
    "Log a professional disagreement with another agency's decision. Only the parties and "
    "their managers see the details. Give your agency's case reference, never the child's "
    "or adult's name."
)
NEW_QUESTIONS = "Your answers bring up the questions below: please answer them and send again."
PRIVATE_COMMANDS = ("list", "status")
DONE = {
    ActionId.ACKNOWLEDGE: "Acknowledged",
    ActionId.ADD_NOTE: "Note added",
    ActionId.ESCALATE: "Escalated",
    ActionId.PROPOSE_RESOLUTION: "Resolution proposed",
    ActionId.CONFIRM_RESOLUTION: "Resolution confirmed",
    ActionId.REJECT_RESOLUTION: "Resolution rejected",
    ActionId.RECORD_DELAY_REASON: "Reason for delay recorded",
    ActionId.RECORD_LEARNING: "Learning point recorded",
    ActionId.WITHDRAW: "Withdrawn",
}
_MENTION = re.compile(r"<at\b[^>]*>.*?</at>", re.IGNORECASE | re.DOTALL)
_WHO = "escalation-bot.who"
# A reference seen again unchanged is not written again for this long (its `updated_at` then
# says when it was last seen, to within this); a changed one is written at once.
REFERENCE_REFRESH = timedelta(hours=1)
_REMEMBERED_LIMIT = 50_000  # references kept in memory before the memory is emptied


@dataclass(frozen=True)
class _Saved:
    """A conversation reference this process saved, and when; `seen` is what it was made from."""

    reference: dict[str, Any]
    person_id: str | None
    at: datetime
    seen: str | None = None


def _fresh(saved: _Saved, person_id: str | None, now: datetime) -> bool:
    """Saved for this person (if one is named), and less than REFERENCE_REFRESH ago."""
    return (person_id is None or person_id == saved.person_id) and (
        timedelta(0) <= now - saved.at < REFERENCE_REFRESH
    )


def seen_in(activity: Any) -> str | None:
    """Everything of an activity that its conversation reference is made from, as one string.

    botbuilder builds a reference from the activity's sender, recipient and conversation (all
    their fields), channel id, locale and service URL; msrest then takes a quarter of a
    millisecond to serialise it. Comparing this string instead tells whether the reference
    can have changed. None if some field cannot be written down (then the reference is
    serialised and compared itself).
    """
    try:
        return json.dumps(
            [
                activity.channel_id,
                activity.locale,
                activity.service_url,
                *(
                    None if part is None else vars(part)
                    for part in (activity.from_property, activity.recipient, activity.conversation)
                ),
            ],
            sort_keys=True,
            separators=(",", ":"),
        )
    except (TypeError, ValueError):
        return None


class TeamsBot(ActivityHandler):
    """Bot Framework turns over the platform-neutral conversations."""

    def __init__(
        self, conversations: Conversations, platform: TeamsPlatform, kick: Callable[[], None]
    ) -> None:
        self.conversations = conversations
        self.service = conversations.service
        self.platform = platform
        self.kick = kick
        # Key -> the reference last saved for it by this process: a turn whose reference is
        # unchanged writes nothing (a write per turn made concurrent turns queue for SQLite's
        # one writer). Only a shortcut: the database stays the truth.
        self._saved: dict[str, _Saved] = {}

    # ---- every turn ---------------------------------------------------------------------

    async def on_turn(self, turn_context: TurnContext) -> None:
        """Note who this is and where they can be reached, then handle the activity."""
        activity = turn_context.activity
        sender = activity.from_property
        if sender is not None and sender.id != getattr(activity.recipient, "id", None):
            person, _ = await self.who(turn_context)
            await self.remember(turn_context, person)
        await super().on_turn(turn_context)

    async def who(self, turn: TurnContext) -> tuple[Person | None, str]:
        """The directory person behind the sender (by Entra object id, else by email), and a name."""
        cached = turn.turn_state.get(_WHO)
        if cached is not None:
            return cached
        sender = turn.activity.from_property
        aad = getattr(sender, "aad_object_id", None)
        name = getattr(sender, "name", None) or "you"
        # A dictionary lookup: the directory is held in memory (read from the store once).
        person = self.service.identify(teams_id=aad) if aad else None
        if person is None and aad:
            person = await self._by_email(turn, aad)
        result = (person, person.name if person else str(name))
        turn.turn_state[_WHO] = result
        return result

    async def _by_email(self, turn: TurnContext, aad: str) -> Person | None:
        """Ask Teams for the sender's email once, and remember their Teams id if it matches."""
        try:
            member = await TeamsInfo.get_member(turn, turn.activity.from_property.id)
        except Exception as exc:  # not in Teams, or the lookup failed: carry on unidentified
            log.info("Teams member lookup failed", extra={"error": exc.__class__.__name__})
            return None
        email = getattr(member, "email", None) or getattr(member, "user_principal_name", None)
        if not email:
            return None
        return await asyncio.to_thread(self._remember_teams_id, email.lower(), aad)

    def _remember_teams_id(self, email: str, aad: str) -> Person | None:
        """Keep a Teams id found by email, so it is looked up once only."""
        person = self.service.identify(email=email)
        if person is None:
            return None
        self.service.remember_person(
            {**person.model_dump(mode="json", exclude_none=True), "teams_id": aad}
        )
        return self.service.identify(teams_id=aad)

    async def remember(self, turn: TurnContext, person: Person | None) -> None:
        """Save where this person (and this channel) can be reached, for messages later."""
        activity = turn.activity
        sender = activity.from_property
        aad = getattr(sender, "aad_object_id", None) or sender.id
        person_id = person.id if person else None
        # The sender's key (a personal chat, or met in a team), then the channel's if any;
        # only the sender's carries a person, and its first save releases what waited for them.
        own = user_key(aad) if _is_personal(activity) else member_key(aad)
        channel = None if _is_personal(activity) else _channel_id(activity)
        now = self.service.clock.now()
        seen = seen_in(activity)
        keys = [(own, person_id), *([(channel_key(channel), None)] if channel else [])]
        if seen is not None and all(self._seen_lately(k, p, seen, now) for k, p in keys):
            return  # the same activity fields as last saved, so the same references
        reference = from_reference(TurnContext.get_conversation_reference(activity))
        wanted: list[tuple[str, dict[str, Any], str | None]] = [(own, reference, person_id)]
        if channel is not None:
            conversation = dict(reference.get("conversation") or {})
            conversation["id"] = channel
            wanted.append(
                (
                    channel_key(channel),
                    {**reference, "conversation": conversation, "user": None},
                    None,
                )
            )
        changed = [w for w in wanted if not self._unchanged(*w, now=now)]
        for key in {w[0] for w in wanted} - {c[0] for c in changed}:
            # The same reference, made from other fields (another member, in a channel) or
            # fields not yet noted: these fields are the ones to compare next time.
            self._saved[key] = replace(self._saved[key], seen=seen)
        if not changed:
            return
        released = await asyncio.to_thread(self._save_references, changed, now)
        if len(self._saved) >= _REMEMBERED_LIMIT:
            self._saved.clear()
        for key, data, pid in changed:
            before = self._saved.get(key)
            kept = pid if pid is not None else (before.person_id if before else None)
            self._saved[key] = _Saved(data, kept, now, seen)
        if released:
            self.kick()

    def _seen_lately(self, key: str, person_id: str | None, seen: str, now: datetime) -> bool:
        """True if this process saved `key`'s reference lately, from these very fields."""
        saved = self._saved.get(key)
        return saved is not None and saved.seen == seen and _fresh(saved, person_id, now)

    def _unchanged(
        self, key: str, reference: dict[str, Any], person_id: str | None, *, now: datetime
    ) -> bool:
        """True if this process saved this very reference (and person) for `key` lately."""
        saved = self._saved.get(key)
        return saved is not None and saved.reference == reference and _fresh(saved, person_id, now)

    def _save_references(
        self, wanted: list[tuple[str, dict[str, Any], str | None]], now: datetime
    ) -> int:
        """Save each (key, reference, person id); how many waiting messages were released."""
        released = 0
        with self.service.store.unit() as session:
            for key, reference, person_id in wanted:
                first = refs.save_reference(
                    session,
                    platform=PLATFORM,
                    key=key,
                    reference=reference,
                    person_id=person_id,
                    now=now,
                )
                if first and person_id:
                    # Messages set aside because the bot could not reach them yet (in a
                    # personal chat, or met in a team, where it may open one): send now.
                    released += refs.release_unreachable(session, person_id, now=now)
        return released

    async def on_error(self, turn: TurnContext, error: Exception) -> None:
        """The one error handler: log it, and say sorry to the person."""
        log.error("Teams turn failed", exc_info=error)
        try:
            await turn.send_activity(
                card_activity(
                    cards.notice_card(
                        "Sorry, something went wrong and nothing was changed. Please try "
                        "again; if it happens again, tell your partnership admin.",
                        attention=True,
                    ),
                    "Sorry, something went wrong",
                )
            )
        except Exception:
            log.warning("could not tell the person about the error", exc_info=True)

    # ---- messages -----------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        """Typed text is a command; a card's Action.Submit arrives with a `value`."""
        value = turn_context.activity.value
        if isinstance(value, dict) and value:
            await self.on_submit(turn_context, value)
            return
        text = _MENTION.sub(" ", turn_context.activity.text or "").strip()
        await self.on_text(turn_context, text)

    async def on_members_added_activity(
        self, members_added: Any, turn_context: TurnContext
    ) -> None:
        """The bot was added to a personal chat: say what it does."""
        activity = turn_context.activity
        bot_added = any(m.id == activity.recipient.id for m in members_added or [])
        if bot_added and _is_personal(activity):
            await self.reply(
                turn_context,
                cards.notice_card(
                    "I help you log a professional disagreement with another agency and "
                    "follow it through your partnership's escalation policy. Type escalate to "
                    "log one, or escalate help for everything I can do.",
                    title="Hello",
                ),
                "Hello",
            )

    async def on_text(self, turn: TurnContext, text: str) -> None:
        """`escalate [list | status REF | timeline | help]`; bare, it opens the intake form."""
        person, name = await self.who(turn)
        words = text.split()
        if words and words[0].lower().lstrip("/") == "escalate":
            words = words[1:]
        if words == [] or [w.lower() for w in words] == ["new"]:
            await self.start_intake(turn, person, name)
            return
        reply = await asyncio.to_thread(
            self.conversations.command, "escalate " + " ".join(words), person
        )
        if reply is None:
            await self.start_intake(turn, person, name)
            return
        card = cards.message_card(reply.as_message(person.id if person else "-"))
        if words[0].lower() in PRIVATE_COMMANDS and not _is_personal(turn.activity):
            # Dispute details never go in a channel: answer in the personal chat.
            if await self.send_private(turn, person, card, reply.text):
                await self.say(turn, "I've answered you in our personal chat.")
            else:
                await self.say(turn, _OPEN_THE_BOT)
            return
        await self.reply(turn, card, reply.text)

    # ---- the intake ---------------------------------------------------------------------

    def _user_key(self, turn: TurnContext) -> str:
        sender = turn.activity.from_property
        return f"teams:{getattr(sender, 'aad_object_id', None) or sender.id}"

    def intake_card(
        self,
        runner: FlowRunner,
        *,
        raw: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        notices: list[Notice] | None = None,
        risk_alerted: bool = False,
    ) -> dict[str, Any]:
        """The intake as one form."""
        return cards.flow_card(
            runner,
            title=INTAKE_TITLE,
            submit_title="Log it",
            data={"form": "intake", "risk_alerted": risk_alerted},
            raw=raw,
            errors=errors,
            notices=notices,
            intro=INTAKE_INTRO,
        )

    async def start_intake(self, turn: TurnContext, person: Person | None, name: str) -> None:
        """Send the intake form: here in a personal chat, privately when asked in a channel."""
        runner = await asyncio.to_thread(
            self.conversations.resume, self._user_key(turn), person, display_name=name
        )
        card = self.intake_card(runner, risk_alerted=bool(runner.state.context.get("risk_alerted")))
        if _is_personal(turn.activity):
            await self.reply(turn, card, INTAKE_TITLE)
        elif await self.send_private(turn, person, card, INTAKE_TITLE):
            await self.say(
                turn,
                "I've sent you the form in our personal chat: the details of a disagreement "
                "stay out of channels.",
            )
        else:
            await self.say(turn, _OPEN_THE_BOT)

    async def on_intake_submit(self, turn: TurnContext, value: dict[str, Any]) -> None:
        """The intake form was sent: errors back on the card, or the dispute is logged."""
        person, name = await self.who(turn)
        user_key = self._user_key(turn)
        runner = await asyncio.to_thread(
            self.conversations.resume, user_key, person, display_name=name, fresh=True
        )
        already_alerted = bool(value.get("risk_alerted"))
        runner.state.context["risk_alerted"] = already_alerted
        raw = cards.form_values(value)
        errors, notices = runner.answer_all({**raw, "confirm": "yes"})
        await asyncio.to_thread(self.conversations.on_notices, user_key, runner, notices)
        alerted = bool(runner.state.context.get("risk_alerted"))
        if alerted and not already_alerted:
            self.kick()
        shown = [n for n in notices if n.urgent]
        if runner.state.stopped:
            # Out of scope: say which procedure applies, on the question that said so.
            stop = next((n.text for n in notices if n.stop), "This is not for this procedure.")
            runner.state.stopped = False
            errors = {**errors, "scope": stop}
        new = _new_questions(runner, value)
        if errors or new:
            await asyncio.to_thread(self.conversations.save, user_key, runner)
            await self.update_card(
                turn,
                self.intake_card(
                    runner,
                    raw=raw,
                    errors=errors,
                    notices=shown + ([Notice(NEW_QUESTIONS)] if new and not errors else []),
                    risk_alerted=alerted,
                ),
                INTAKE_TITLE,
            )
            return
        if not await asyncio.to_thread(self.service.claim_once, _submission_key(turn, value)):
            return  # the same form sent twice (a double click, a retry): logged the first time
        aad = getattr(turn.activity.from_property, "aad_object_id", None)
        outcome = await asyncio.to_thread(
            self.conversations.finish_intake,
            user_key,
            runner,
            platform_ids={"teams_id": aad} if person is None and aad else None,
        )
        if not outcome.ok:
            first = next(iter(value.get("shown") or ["scope"]))
            await self.update_card(
                turn,
                self.intake_card(runner, raw=raw, errors={first: outcome.text}, notices=shown),
                INTAKE_TITLE,
            )
            return
        try:
            await self.update_card(
                turn,
                cards.done_card(
                    "Professional disagreement logged", outcome.text, self._stamp("Logged", name)
                ),
                outcome.text,
            )
        finally:
            self.kick()  # the pings it queued, once the person's own card is updated

    # ---- buttons and action forms -------------------------------------------------------

    async def on_submit(self, turn: TurnContext, value: dict[str, Any]) -> None:
        """An Action.Submit: the intake form, an action form, or a button on a message."""
        form = value.get("form")
        if form == "intake":
            await self.on_intake_submit(turn, value)
        elif form == "action":
            await self.on_action_submit(turn, value)
        elif "action" in value and "ref" in value:
            await self.on_button(turn, value)
        else:
            await self.say(
                turn, "That card is out of date. Type escalate help to see what I can do."
            )

    def _button(self, value: dict[str, Any]) -> ActionId | None:
        try:
            return ActionId(str(value.get("action")))
        except ValueError:
            return None

    async def on_button(self, turn: TurnContext, value: dict[str, Any]) -> None:
        """A dispute button: act at once, or send the action's form; refusals are private."""
        button = self._button(value)
        ref = str(value.get("ref", ""))[:40]
        person, _ = await self.who(turn)
        if button is None:
            await self.private_text(turn, person, "That button is out of date.")
            return
        if person is None:
            await self.private_text(
                turn,
                person,
                "You are not in the partnership directory, so you cannot act on disputes yet. "
                "Please ask your partnership admin to add you.",
            )
            return
        if button == ActionId.VIEW_DETAILS:
            reply = await asyncio.to_thread(self.conversations.status_reply, ref, person)
            if not reply.ok:
                await self.private_text(turn, person, reply.text)
                return
            card = cards.message_card(reply.as_message(person.id))
            await self.private_card(turn, person, card, reply.text)
            return
        if button not in self.conversations.actions:
            await self.private_text(
                turn,
                person,
                f"'{button.value.replace('_', ' ')}' can't be done from Teams yet; please ask "
                "your partnership admin.",
            )
            return
        flow = self.conversations.action_flow(button)
        if not flow.flow.questions:
            # Done at once; a refusal is recorded and explained by the action itself.
            outcome, status = await asyncio.to_thread(
                self._act, ref, person, button, {}, status_if=lambda o: o.changed
            )
            if not outcome.changed or status is None:
                await self.private_text(turn, person, outcome.text)
                return
            try:
                await self.update_card(
                    turn, self.acted_card(turn, person, button, outcome, status), outcome.text
                )
            finally:
                # The notices it queued go once the card pressed is updated: started first,
                # they shared the event loop with that update and delayed it.
                self.kick()
            return
        # No form for someone who could not submit it; the attempt goes on the record.
        seen = await asyncio.to_thread(self.service.may, ref, person.id, flow.action)
        if not seen.ok or seen.dispute is None:
            await self.private_text(turn, person, seen.text)
            return
        runner = FlowRunner(flow.flow, self.conversations.context(person))
        card = self.action_card(
            button, ref, runner, origin=turn.activity.reply_to_id, stage=seen.dispute.stage
        )
        await self.private_card(turn, person, card, flow.flow.title)

    def action_card(
        self,
        button: ActionId,
        ref: str,
        runner: FlowRunner,
        *,
        origin: str | None,
        stage: int | None = None,
        raw: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        notices: list[Notice] | None = None,
    ) -> dict[str, Any]:
        """An action's form; `origin` is the card whose button opened it."""
        flow = self.conversations.action_flow(button)
        return cards.flow_card(
            runner,
            title=f"{flow.flow.title}: {ref}",
            submit_title="Save",
            data={
                "form": "action",
                "action": button.value,
                "ref": ref,
                **({"origin": origin} if origin else {}),
                # The stage the form was opened at: an escalation already made by someone
                # else meanwhile is then refused, not repeated (two managers at once).
                **({"stage": stage} if stage is not None else {}),
            },
            raw=raw,
            errors=errors,
            notices=notices,
        )

    async def on_action_submit(self, turn: TurnContext, value: dict[str, Any]) -> None:
        """An action's form was sent: errors back on the form, or the action is done."""
        button = self._button(value)
        ref = str(value.get("ref", ""))[:40]
        person, name = await self.who(turn)
        if button is None or button not in self.conversations.actions:
            await self.private_text(turn, person, "That form is out of date.")
            return
        if person is None:
            await self.private_text(turn, person, "You are not in the partnership directory.")
            return
        origin = value.get("origin")
        runner = FlowRunner(
            self.conversations.action_flow(button).flow, self.conversations.context(person)
        )
        raw = cards.form_values(value)
        errors, _ = runner.answer_all(raw)
        new = _new_questions(runner, value)
        if errors or new:
            notices = [Notice(NEW_QUESTIONS)] if new and not errors else []
            card = self.action_card(
                button,
                ref,
                runner,
                origin=origin,
                stage=value.get("stage") if isinstance(value.get("stage"), int) else None,
                raw=raw,
                errors=errors,
                notices=notices,
            )
            await self.update_card(turn, card, "Please check your answers")
            return
        if not await asyncio.to_thread(self.service.claim_once, _submission_key(turn, value)):
            return
        answers = dict(runner.state.answers)
        stage = value.get("stage")
        if isinstance(stage, int) and not isinstance(stage, bool):
            answers[FROM_STAGE] = stage
        outcome, status = await asyncio.to_thread(
            self._act, ref, person, button, answers, status_if=lambda o: o.ok and bool(origin)
        )
        if not outcome.ok:
            first = next(iter(value.get("shown") or ["reason"]))
            card = self.action_card(
                button, ref, runner, origin=origin, raw=raw, errors={first: outcome.text}
            )
            await self.update_card(turn, card, outcome.text)
            return
        title = f"{self.conversations.action_flow(button).flow.title}: {ref}"
        try:
            await self.update_card(
                turn, cards.done_card(title, outcome.text, self._stamp(_done(button), name)), title
            )
            if origin and status is not None:
                await self.update_card(
                    turn,
                    self.acted_card(turn, person, button, outcome, status),
                    outcome.text,
                    activity_id=origin,
                )
        finally:
            self.kick()  # the notices it queued, once the person's own cards are updated

    def _act(
        self,
        ref: str,
        person: Person,
        button: ActionId,
        answers: dict[str, Any],
        *,
        status_if: Callable[[Outcome], bool],
    ) -> tuple[Outcome, Reply | None]:
        """Carry out a button's action; then, if `status_if` the outcome, where things stand."""
        outcome = self.conversations.run_action(ref, person, button, answers)
        if not status_if(outcome):
            return outcome, None
        # The dispute as the action left it, when the action says (and its doer was let in):
        # no second read of what was just written.
        d = outcome.dispute
        if (
            outcome.ok
            and d is not None
            and d.allowed(person, Action.VIEW, self.service.directory) is None
        ):
            return outcome, self.conversations.status_of(d, person)
        return outcome, self.conversations.status_reply(ref, person)

    def acted_card(
        self, turn: TurnContext, person: Person, button: ActionId, outcome: Outcome, status: Reply
    ) -> dict[str, Any]:
        """The pressed card, after the action: who acted and when, and where things stand.

        The dispute's details are shown only in a personal chat, never in a channel.
        """
        facts = status.facts if status.ok and _is_personal(turn.activity) else []
        # The button just pressed is done: the card keeps only what is left to do.
        buttons: list[Button] = (
            [b for b in status.buttons if b.action != button] if status.ok else []
        )
        return cards.acted_card(
            self._stamp(_done(button), person.name), outcome.text, facts, buttons
        )

    def _stamp(self, what: str, name: str) -> str:
        now = self.service.clock.now()
        return f"{what} by {name} at {self.service.notices().when(now, now)}."

    # ---- sending --------------------------------------------------------------------------

    async def reply(self, turn: TurnContext, card: dict[str, Any], summary: str) -> None:
        """Answer in the conversation the activity came from."""
        await turn.send_activity(card_activity(card, summary))

    async def say(self, turn: TurnContext, text: str) -> None:
        """A short answer in the conversation the activity came from."""
        await self.reply(turn, cards.notice_card(text), text)

    async def update_card(
        self,
        turn: TurnContext,
        card: dict[str, Any],
        summary: str,
        *,
        activity_id: str | None = None,
    ) -> None:
        """Replace the card that was pressed (or `activity_id`); send it anew if unknown."""
        target = activity_id or turn.activity.reply_to_id
        activity = card_activity(card, summary)
        if not target:
            await turn.send_activity(activity)
            return
        activity.id = target
        await turn.update_activity(activity)

    async def send_private(
        self, turn: TurnContext, person: Person | None, card: dict[str, Any], summary: str
    ) -> bool:
        """Send a card to the sender's personal chat (opening it if need be); False if not possible."""
        activity = card_activity(card, summary)
        sender = turn.activity.from_property
        aad = getattr(sender, "aad_object_id", None) or sender.id
        try:
            stored = await asyncio.to_thread(self._stored_reference, user_key(aad))
            if stored is not None:
                reference = to_reference(stored)
            else:
                member = TurnContext.get_conversation_reference(turn.activity)
                reference = await self.platform.open_personal_chat(
                    member, person_id=person.id if person else None
                )
            await self.platform.post(reference, activity)
        except Exception as exc:
            log.info("could not reach a personal chat", extra={"error": exc.__class__.__name__})
            return False
        return True

    def _stored_reference(self, key: str) -> dict[str, Any] | None:
        with self.service.store.reading() as session:
            return refs.reference(session, PLATFORM, key)

    async def private_card(
        self, turn: TurnContext, person: Person | None, card: dict[str, Any], summary: str
    ) -> None:
        """A card only the sender sees: here in a personal chat, else in their personal chat."""
        if _is_personal(turn.activity):
            await self.reply(turn, card, summary)
        elif not await self.send_private(turn, person, card, summary):
            await self.say(turn, _OPEN_THE_BOT)

    async def private_text(self, turn: TurnContext, person: Person | None, text: str) -> None:
        """An explanation or refusal only the sender sees."""
        await self.private_card(turn, person, cards.notice_card(text), text)


_OPEN_THE_BOT = (
    "Please open a personal chat with me (Apps, then search for the escalation bot) and type "
    "escalate there: the details of a disagreement must not go in a channel."
)


def _done(button: ActionId) -> str:
    """What pressing the button did, in the past tense."""
    return DONE.get(button) or f"{BUTTON_LABELS[button]}: done"


def _is_personal(activity: Any) -> bool:
    conversation = activity.conversation
    kind = getattr(conversation, "conversation_type", None)
    return kind == "personal" or (kind is None and not getattr(conversation, "is_group", False))


def _channel_id(activity: Any) -> str | None:
    """The Teams channel of a channel conversation, without the thread part."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    channel = (data.get("channel") or {}).get("id")
    if channel:
        return str(channel)
    conversation = activity.conversation
    if getattr(conversation, "conversation_type", None) == "channel":
        return base_channel_id(conversation.id)
    return None


def _new_questions(runner: FlowRunner, value: dict[str, Any]) -> list[str]:
    """Questions that apply now but were not on the card the person filled in."""
    shown = value.get("shown")
    if not isinstance(shown, list):
        return []
    return [
        q.id
        for q in runner.applicable()
        if q.kind != "confirm" and q.id not in shown and q.id not in runner.state.answers
    ]


def _submission_key(turn: TurnContext, value: dict[str, Any]) -> str:
    """One key per card and answers: the same form sent twice acts once."""
    activity = turn.activity
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
    card = activity.reply_to_id or activity.id or ""
    return f"teams-card:{activity.conversation.id}:{card}:{digest}"[:200]


# ---- the endpoint ---------------------------------------------------------------------------


class TeamsEndpoint:
    """`POST /api/messages`: authenticate the activity, then run the bot's turn.

    With `turns`, a message is answered as soon as it is authenticated and its turn runs after
    (bot/adapters/teams/turns.py); without, every activity is answered once its turn is done,
    as botbuilder's own `CloudAdapter.process` does.
    """

    def __init__(self, adapter: CloudAdapter, bot: ActivityHandler, turns: Turns | None = None):
        self.adapter = adapter
        self.bot = bot
        self.turns = turns

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one activity from the Bot Connector service."""
        if "application/json" not in request.headers.get("Content-Type", ""):
            return web.Response(status=415)
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400)
        if not isinstance(body, dict):
            return web.Response(status=400)
        try:
            activity = Activity().deserialize(body)
        except Exception:  # msrest's DeserializationError and kin: not an activity
            return web.Response(status=400)
        if not activity.type:
            return web.Response(status=400)
        unanswerable = _unanswerable(activity)
        if unanswerable is not None:
            # Before the adapter sees it: without a serviceUrl botbuilder would answer at its
            # default, api.botframework.com; without a sender there is nobody to answer.
            log.warning("refused an activity", extra={"reason": unanswerable})
            return web.Response(status=400, text=unanswerable)
        header = request.headers.get("Authorization", "")
        try:
            # Done here rather than in CloudAdapter.process, so that every bad token is a 401:
            # botbuilder lets malformed tokens escape as other errors (an HTTP 500).
            auth = await self.adapter.bot_framework_authentication.authenticate_request(
                activity, header
            )
        except Exception as exc:
            log.warning(
                "refused an activity without a valid token", extra={"reason": repr(exc)[:200]}
            )
            return web.Response(status=401)
        if self.turns is not None and _answered_apart(activity):
            self.turns.start(
                activity.conversation.id,
                partial(self.adapter.process_activity, auth, activity, self.bot.on_turn),
            )
            return web.Response(status=202)
        invoke = await self.adapter.process_activity(auth, activity, self.bot.on_turn)
        if invoke is not None and invoke.status == 501 and activity.name == "adaptiveCard/action":
            # An Action.Execute from a card this bot does not make (its cards use
            # Action.Submit): a polite answer on the card, not a 5xx, and nothing changed.
            return web.json_response(
                {
                    "statusCode": 200,
                    "type": "application/vnd.microsoft.activity.message",
                    "value": "This card is out of date or not from this bot: nothing was "
                    "changed. Type escalate help to see what you can do.",
                }
            )
        if invoke is not None:
            return web.json_response(data=serializer_helper(invoke.body), status=invoke.status)
        return web.Response(status=201)


def _answered_apart(activity: Activity) -> bool:
    """True if the activity's HTTP answer carries nothing, so it can be given before the turn.

    An invoke's answer is its result, and so are the replies of an `expectReplies` activity.
    """
    return (
        activity.type != ActivityTypes.invoke
        and activity.delivery_mode != DeliveryModes.expect_replies
        and activity.conversation is not None
        and isinstance(activity.conversation.id, str)
    )


def _unanswerable(activity: Activity) -> str | None:
    """Why the bot cannot answer this activity (no address to answer at, or no sender), if so."""
    service_url = activity.service_url
    if not isinstance(service_url, str) or not re.match(r"https?://[^\s/]", service_url):
        return "The activity has no serviceUrl (an http or https address): nowhere to answer it."
    sender = activity.from_property
    if sender is None or not isinstance(sender.id, str) or not sender.id.strip():
        return "The activity has no sender (from.id): nobody to answer."
    return None


def teams_authentication(settings: Settings, *, credentials_factory: Any = None) -> Any:
    """Bot Framework authentication from the settings: single-tenant when a tenant id is set."""
    if not settings.microsoft_app_id:
        raise ValueError("MICROSOFT_APP_ID is not set")
    if credentials_factory is None and not settings.microsoft_app_password:
        raise ValueError("MICROSOFT_APP_ID is set but MICROSOFT_APP_PASSWORD is not")
    quicker_connector_clients()
    tenant = settings.microsoft_app_tenant_id
    configuration = SimpleNamespace(
        APP_ID=settings.microsoft_app_id,
        APP_PASSWORD=settings.microsoft_app_password,
        APP_TENANTID=tenant,
        APP_TYPE="SingleTenant" if tenant else "MultiTenant",
    )
    # Clients built once and reused, not two for every turn (bot/adapters/teams/clients.py).
    return KeptClientsAuthentication(configuration, credentials_factory=credentials_factory)


def build_teams(
    core: Core,
    kick: Callable[[], None],
    platforms: Callable[[], Sequence[Platform]],
    *,
    inflight: InFlight | None = None,
    credentials_factory: Any = None,
) -> tuple[TeamsEndpoint, TeamsPlatform]:
    """The Teams endpoint and the outbox's Teams platform, sharing one CloudAdapter.

    Messages are answered before their turns run, which wait for the answers in `inflight`.

    `credentials_factory` replaces the app password's token requests (tests use a fake one:
    no request may go to Microsoft's sign-in service).
    """
    settings = core.settings
    adapter = CloudAdapter(teams_authentication(settings, credentials_factory=credentials_factory))
    directory = lambda: core.service.directory  # noqa: E731 - read afresh on every use
    channels = {
        name: ids.teams for name, ids in core.partnership.config.channels.items() if ids.teams
    }
    assert settings.microsoft_app_id is not None
    platform = TeamsPlatform(
        adapter,
        settings.microsoft_app_id,
        core.store,
        directory,
        channels,
        core.service.clock,
        tenant_id=settings.microsoft_app_tenant_id,
        waiting=waiting_for(core.store, directory, platforms),
    )
    bot = TeamsBot(core.conversations, platform, kick)
    adapter.on_turn_error = bot.on_error
    return TeamsEndpoint(adapter, bot, Turns(inflight)), platform
