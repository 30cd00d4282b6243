"""The Slack side of the conversation: /escalate, its modals, buttons and App Home, with Bolt.

Bolt runs with `process_before_response=True` (DESIGN.md: a bare ack then takes 1-2 ms). Slack
wants an answer within 3 seconds, so every listener runs as a task under a time budget
(`Budget`): its database work runs in a worker thread, and if the budget runs out before the
listener has acked, Slack gets a plain ack at once while the work carries on; what the person
still needs to hear (an error after the modal closed, a late reply) reaches them by direct
message or the command's response_url. Messages to others go through the outbox, which the
`kick` callback wakes at once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.blocks import (
    acted_blocks,
    block_ids,
    clip,
    escape,
    flow_view,
    home_view,
    info_view,
    message_blocks,
    notice_view,
    view_values,
)
from bot.conversation import HELP, Conversations, Reply
from bot.directory import Person
from bot.flows.actions import FROM_STAGE
from bot.flows.engine import FlowRunner, Notice
from bot.inflight import InFlight
from bot.messages import ActionId, Message, Recipient
from bot.ratelimit import RateLimiter
from bot.service import Outcome

log = logging.getLogger(__name__)

INTAKE = "intake"
ACTION_PREFIX = "action:"
BUTTONS = re.compile("^(" + "|".join(a.value for a in ActionId) + ")$")
COMMANDS = ("list", "status", "timeline", "help", "digest")
# What a dispute button carries; anything else (a forged or very old button) acts on nothing.
REFERENCE = re.compile(r"^[A-Z]{2,8}-\d{4}-\d{1,6}$")
# A form or button from an older version of the bot: said plainly, and nothing is saved.
STALE_FORM = (
    "This form is from an older version of the bot, so nothing was saved. "
    "Please start again: type /escalate, or /escalate list to see your disputes."
)
STALE_BUTTON = (
    "That button is from an older version of the bot and no longer does anything. "
    "Type /escalate list to see your disputes and what you can do now."
)
NOT_A_REFERENCE = (
    "That button doesn't point to any dispute, so nothing was done. "
    "Type /escalate list to see your disputes."
)
CHANGED_FORM = (
    "This form has changed since you opened it. Please check the answers below and submit it again."
)


class SlackConversations:
    """Bolt listeners over the platform-neutral conversations."""

    def __init__(
        self,
        conversations: Conversations,
        kick: Callable[[], None],
        limiter: RateLimiter | None = None,
    ) -> None:
        self.conversations = conversations
        self.service = conversations.service
        self.kick = kick
        self.limiter = limiter

    # ---- who is this? -------------------------------------------------------------------

    async def person(self, client: AsyncWebClient, user_id: str) -> tuple[Person | None, str]:
        """The directory person behind a Slack user (found by email once), and a display name."""
        # In memory (the directory and the people remembered, loaded when the server was
        # built): no thread hop for the lookup every request starts with.
        person = self.service.identify(slack_id=user_id)
        if person is not None:
            return person, person.name
        try:
            info = await client.users_info(user=user_id)
        except SlackApiError:
            return None, "you"
        profile = info["user"].get("profile", {})
        name = profile.get("real_name") or info["user"].get("real_name") or "you"
        email = profile.get("email")
        person = await asyncio.to_thread(self.service.identify, email=email) if email else None
        if person is not None:
            person = await asyncio.to_thread(self._remember_slack_id, person, user_id)
        return person, str(name)

    def _remember_slack_id(self, person: Person, user_id: str) -> Person | None:
        """Keep a Slack id found by email, so it is looked up once only."""
        self.service.remember_person(
            {**person.model_dump(mode="json", exclude_none=True), "slack_id": user_id}
        )
        return self.service.identify(slack_id=user_id)

    # ---- /escalate ----------------------------------------------------------------------

    async def on_command(
        self, ack: Ack, command: dict[str, Any], client: AsyncWebClient, respond: Any
    ) -> None:
        """/escalate [list | status REF | timeline | digest | help]; bare, it opens the intake."""
        # Someone firing /escalate again and again is slowed, kindly, before any database work.
        wait = self.limiter.take(f"slack:{command.get('user_id')}") if self.limiter else 0.0
        if wait > 0:
            await ack(
                response_type="ephemeral",
                text=(
                    "That's a lot of /escalate commands in a short time, so I'm pausing you for "
                    f"a moment. Please try again in {math.ceil(wait)} seconds; nothing you've "
                    "already logged is affected."
                ),
            )
            return
        text = (command.get("text") or "").strip()
        verb = text.split()[0].lower() if text else ""
        if verb and verb not in (*COMMANDS, "new"):
            await ack(
                response_type="ephemeral",
                text=f"I don't know '{escape(verb[:30])}'. Try /escalate help.",
            )
            return
        if verb in COMMANDS:
            person, _ = await self.person(client, command["user_id"])
            if verb == "help":
                # Fixed text, no database: answered here, its blocks built once.
                payload = _help_payload()
            else:
                reply = await asyncio.to_thread(
                    self.conversations.command, f"escalate {text}", person
                )
                assert reply is not None
                payload = _reply_payload(reply)
            if not await ack(response_type="ephemeral", **payload):
                await respond(response_type="ephemeral", **payload)
            return
        # The intake: Slack hears at once (the modal's trigger lasts 3 s, ample for the rest),
        # and the modal, built and serialised on a worker thread, follows.
        await ack()
        person, name = await self.person(client, command["user_id"])
        view = await asyncio.to_thread(
            self._fresh_intake, f"slack:{command['user_id']}", person, name
        )
        try:
            await client.views_open(trigger_id=command["trigger_id"], view=view)
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else "unknown"
            log.warning("Slack call failed after ack", extra={"error": error})
            await respond(
                response_type="ephemeral",
                text=(
                    "Sorry, Slack did not open the form in time. Please type /escalate again; "
                    "nothing was logged."
                ),
            )

    def _fresh_intake(self, user_key: str, person: Person | None, name: str) -> dict[str, Any]:
        """The intake modal for a person starting (or coming back to) one, as Slack's JSON."""
        runner = self.conversations.resume(user_key, person, display_name=name)
        # slack_sdk's to_dict validates every element: milliseconds of CPU for a large form,
        # done here, off the event loop, rather than inside views_open.
        return dict(self._intake_view(runner, [], {}).to_dict())

    def _intake_view(
        self, runner: FlowRunner, notices: list[Notice], metadata: dict[str, Any]
    ) -> Any:
        return flow_view(
            runner,
            callback_id=INTAKE,
            title="Log a disagreement",
            submit="Log it",
            answers=runner.state.answers,
            notices=notices,
            metadata=metadata,
            intro=(
                "Log a professional disagreement with another agency's decision. "
                "Only the parties and their managers see the details."
            ),
        )

    def _lenient(self, runner: FlowRunner, values: dict[str, Any]) -> list[Notice]:
        """Take whatever answers parse, to re-render the modal as the person fills it in."""
        notices: list[Notice] = []
        for q in runner.flow.questions:
            if q.applies(runner.state.answers, runner.ctx) and values.get(q.id) not in (None, ""):
                notices += runner.answer(q.id, values[q.id]).notices
        runner.state.stopped = False  # a scope answer is explained on submit, inline
        return notices

    async def on_intake_change(
        self, ack: Ack, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """An answer in the intake modal changed: show urgent guidance, re-render what applies."""
        await ack()
        view = body["view"]
        user_id = body["user"]["id"]
        person, name = await self.person(client, user_id)
        user_key = f"slack:{user_id}"
        runner = self.conversations.resume(user_key, person, display_name=name, fresh=True)
        notices = self._lenient(runner, view_values(view))
        metadata = json.loads(view.get("private_metadata") or "{}")
        runner.state.context["risk_alerted"] = metadata.get("risk_alerted", False)
        await asyncio.to_thread(self.conversations.on_notices, user_key, runner, notices)
        if runner.state.context.get("risk_alerted"):
            metadata["risk_alerted"] = True
            self.kick()
        await asyncio.to_thread(self.conversations.save, user_key, runner)
        shown = [n for n in notices if n.urgent]
        await _quietly(
            client.views_update,
            view_id=view["id"],
            hash=view.get("hash"),
            view=self._intake_view(runner, shown, metadata),
        )

    async def on_intake_submit(
        self, ack: Ack, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """The intake modal was submitted: errors inline, or the dispute is logged."""
        view = body["view"]
        user_id = body["user"]["id"]
        person, name = await self.person(client, user_id)
        user_key = f"slack:{user_id}"
        runner = self.conversations.resume(user_key, person, display_name=name, fresh=True)
        values = {**view_values(view), "confirm": "yes"}
        errors, notices = runner.answer_all(values)
        metadata = _metadata(view)
        if runner.state.stopped:
            # Out of scope: say which procedure applies, on the question that said so.
            stop = next((n for n in notices if n.stop), Notice("This is not for this procedure."))
            again = self._intake_view(runner, [stop], metadata)
            await _errors(ack, view, {"scope": stop.text}, again)
            return
        if errors:
            again = self._intake_view(runner, [Notice(CHANGED_FORM)], metadata)
            await _errors(ack, view, errors, again)
            return
        key = _submission_key(view)
        outcome = await asyncio.to_thread(self._log, key, user_key, runner, person, user_id)
        if outcome is None or outcome.ok:
            # None: a repeated submission of the same modal, logged the first time.
            await ack()
            self.kick()
            return
        first = next(iter(view_values(view)), "scope")
        refused = notice_view(f"Your disagreement was not logged: {outcome.text}")
        if not await _errors(ack, view, {first: outcome.text}, refused):
            await self._dm(client, user_id, f"Your disagreement was not logged: {outcome.text}")

    def _log(
        self, key: str, user_key: str, runner: FlowRunner, person: Person | None, user_id: str
    ) -> Outcome | None:
        """Log the dispute of a submitted intake, once per modal."""
        if not self.service.claim_once(key):
            return None
        return self.conversations.finish_intake(
            user_key, runner, platform_ids={"slack_id": user_id} if person is None else None
        )

    # ---- buttons on messages ----------------------------------------------------------------

    async def on_button(self, ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A dispute button: act at once, or open the action's modal; refusals are private."""
        await ack()
        action = body["actions"][0]
        button = ActionId(action["action_id"])
        ref = str(action.get("value", ""))
        user_id = body["user"]["id"]
        channel = (body.get("container") or {}).get("channel_id") or (
            body.get("channel") or {}
        ).get("id")
        message_ts = (body.get("container") or {}).get("message_ts")
        if not REFERENCE.match(ref.strip().upper()):
            # Not a dispute reference: nothing to look up, and nothing of it echoed back.
            await self._private(client, channel, user_id, NOT_A_REFERENCE)
            return
        person, _ = await self.person(client, user_id)
        if person is None:
            await self._private(
                client,
                channel,
                user_id,
                "You are not in the partnership directory, so you cannot act on disputes yet. "
                "Please ask your partnership admin to add you.",
            )
            return
        if button == ActionId.VIEW_DETAILS:
            reply = await asyncio.to_thread(self.conversations.status_reply, ref, person)
            if not reply.ok:
                await self._private(client, channel, user_id, reply.text)
                return
            message = reply.as_message(person.id)
            await _quietly(
                client.views_open, trigger_id=body["trigger_id"], view=info_view(ref, message)
            )
            return
        flow = self.conversations.action_flow(button)
        if not flow.flow.questions:
            # Done at once; a refusal is recorded and explained by the action itself.
            outcome = await asyncio.to_thread(
                self.conversations.run_action, ref, person, button, _instant(button)
            )
            await self._after(
                client, channel, user_id, message_ts, body, outcome.changed, outcome.text
            )
            return
        # No form for someone who could not submit it; the attempt goes on the record.
        seen = await asyncio.to_thread(self.service.may, ref, person.id, flow.action)
        if not seen.ok or seen.dispute is None:
            await self._private(client, channel, user_id, seen.text)
            return
        runner = FlowRunner(flow.flow, self.conversations.context(person))
        # The stage as the person saw it: two managers escalating at once move it one stage.
        metadata = {"ref": ref, "channel": channel, "ts": message_ts, "stage": seen.dispute.stage}
        await _quietly(
            client.views_open,
            trigger_id=body["trigger_id"],
            view=flow_view(
                runner,
                callback_id=f"{ACTION_PREFIX}{button.value}",
                title=flow.flow.title,
                submit="Save",
                answers={},
                notices=[],
                metadata=metadata,
                intro=f"{ref}",
            ),
        )

    async def on_action_change(
        self, ack: Ack, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """An answer in an action modal changed: re-render the questions that now apply."""
        await ack()
        view = body["view"]
        button = _button(view.get("callback_id"))
        person, _ = await self.person(client, body["user"]["id"])
        if person is None or button is None:
            return
        flow = self.conversations.action_flow(button)
        runner = FlowRunner(flow.flow, self.conversations.context(person))
        self._lenient(runner, view_values(view))
        metadata = _metadata(view)
        await _quietly(
            client.views_update,
            view_id=view["id"],
            hash=view.get("hash"),
            view=flow_view(
                runner,
                callback_id=view["callback_id"],
                title=flow.flow.title,
                submit="Save",
                answers=runner.state.answers,
                notices=[],
                metadata=metadata,
                intro=str(metadata.get("ref", "")),
            ),
        )

    async def on_action_submit(
        self, ack: Ack, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """An action modal was submitted: validate inline, then act."""
        view = body["view"]
        button = _button(view.get("callback_id"))
        metadata = _metadata(view)
        ref = metadata.get("ref")
        if button is None or not isinstance(ref, str) or not REFERENCE.match(ref.strip().upper()):
            # A form of an older version (another action, or metadata it no longer reads):
            # closing it silently would look like success, so say that nothing was saved.
            await ack(response_action="update", view=notice_view(STALE_FORM))
            return
        user_id = body["user"]["id"]
        person, _ = await self.person(client, user_id)
        first = next(iter(view_values(view)), "text")
        if person is None:
            not_known = "You are not in the directory."
            await _errors(ack, view, {first: not_known}, notice_view(not_known))
            return
        flow = self.conversations.action_flow(button)
        runner = FlowRunner(flow.flow, self.conversations.context(person))
        errors, _ = runner.answer_all(view_values(view))
        if errors:
            again = flow_view(
                runner,
                callback_id=f"{ACTION_PREFIX}{button.value}",
                title=flow.flow.title,
                submit="Save",
                answers=runner.state.answers,
                notices=[Notice(CHANGED_FORM)],
                metadata=metadata,
                intro=ref,
            )
            await _errors(ack, view, errors, again)
            return
        answers = dict(runner.state.answers)
        stage = metadata.get("stage")
        if isinstance(stage, int) and not isinstance(stage, bool):
            answers[FROM_STAGE] = stage
        if not await asyncio.to_thread(self.service.claim_once, _submission_key(view)):
            # The very same form and answers again (a replayed request): acted on the first time.
            await ack()
            return
        outcome = await asyncio.to_thread(
            self.conversations.run_action, ref, person, button, answers
        )
        if not outcome.ok:
            if not await _errors(ack, view, {first: outcome.text}, notice_view(outcome.text)):
                await self._dm(client, user_id, outcome.text)
            return
        await ack()
        await self._after(
            client,
            metadata.get("channel"),
            user_id,
            metadata.get("ts"),
            None,
            outcome.changed,
            outcome.text,
        )

    async def _after(
        self,
        client: AsyncWebClient,
        channel: str | None,
        user_id: str,
        message_ts: str | None,
        body: dict[str, Any] | None,
        changed: bool,
        text: str,
    ) -> None:
        """Show who acted and when on the message clicked; or explain privately."""
        try:
            if not changed or channel is None or message_ts is None:
                await self._private(client, channel, user_id, text)
                return
            original = (body or {}).get("message", {}).get("blocks")
            if original is None:
                await self._private(client, channel, user_id, text)
                return
            await _quietly(
                client.chat_update,
                channel=channel,
                ts=message_ts,
                text=clip(text, 3000),
                blocks=acted_blocks(original, text),
            )
        finally:
            # The notices the action queued go once the person's own message is updated:
            # started first, they shared the event loop with that update and delayed it.
            self.kick()

    async def _dm(self, client: AsyncWebClient, user_id: str, text: str) -> None:
        """A direct message to the person (when the modal they could have seen it in is gone)."""
        await _quietly(client.chat_postMessage, channel=user_id, text=escape(text))

    async def _private(
        self, client: AsyncWebClient, channel: str | None, user_id: str, text: str
    ) -> None:
        if channel:
            await _quietly(
                client.chat_postEphemeral, channel=channel, user=user_id, text=escape(text)
            )

    # ---- routing -------------------------------------------------------------------------

    async def on_block_action(self, ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A button pressed, or an answer changed in one of our modals: to its handler."""
        actions = body.get("actions")
        first = actions[0] if isinstance(actions, list) and actions else {}
        action_id = first.get("action_id") if isinstance(first, dict) else None
        view = body.get("view") if isinstance(body.get("view"), dict) else {}
        form = str(view.get("callback_id") or "") if view else ""
        if action_id == "value" and form == INTAKE:
            await self.on_intake_change(ack, body, client)
        elif action_id == "value" and form.startswith(ACTION_PREFIX):
            await self.on_action_change(ack, body, client)
        elif isinstance(action_id, str) and BUTTONS.match(action_id):
            await self.on_button(ack, body, client)
        else:
            # A button or form of an older version of the bot: a plain answer rather than
            # Bolt's 404, which Slack shows as an error icon.
            await self.on_unknown_action(ack, body, client)

    async def on_view(self, ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A modal submitted: the intake, an action's form, or one this version does not have."""
        form = str(body["view"].get("callback_id") or "")
        if form == INTAKE:
            await self.on_intake_submit(ack, body, client)
        elif form.startswith(ACTION_PREFIX):
            await self.on_action_submit(ack, body, client)
        else:
            await self.on_unknown_view(ack, body, client)

    # ---- what this version of the bot does not have ----------------------------------------

    async def on_unknown_action(
        self, ack: Ack, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """A button this version does not have (an old message): say so privately, change nothing."""
        await ack()
        user = body.get("user")
        user_id = user.get("id") if isinstance(user, dict) else None
        container = body.get("container") if isinstance(body.get("container"), dict) else {}
        channel = container.get("channel_id") if container else None
        if isinstance(user_id, str) and isinstance(channel, str):
            await self._private(client, channel, user_id, STALE_BUTTON)

    async def on_unknown_view(self, ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A form this version does not have: it says nothing was saved, instead of an error."""
        await ack(response_action="update", view=notice_view(STALE_FORM))

    # ---- App Home -------------------------------------------------------------------------

    async def on_home(self, ack: Ack, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A person's open disputes, their part in each, and the next deadline."""
        await ack()
        user_id = body["event"]["user"]
        person, _ = await self.person(client, user_id)
        if person is None:
            view = home_view(
                "You are not in the partnership directory yet.",
                [("To log a disagreement", "Type /escalate in any channel.")],
            )
        else:
            now = self.service.clock.now()
            notices = self.service.notices()
            rows = [
                (
                    f"{d.ref}: stage {d.stage} ({d.current_stage.name})",
                    f"{notices.agencies(d)}. You are {self.conversations.role_in(d, person)}. "
                    f"Next deadline: {notices.next_deadline(d, now)}.",
                )
                for d in await asyncio.to_thread(self.service.my_open, person.id)
            ]
            heading = f"Your open disputes ({len(rows)})" if rows else "You have no open disputes."
            view = home_view(heading, rows)
        await _quietly(client.views_publish, user_id=user_id, view=view)


async def _quietly(method: Callable[..., Awaitable[Any]], **kwargs: Any) -> None:
    """Call Slack after the ack: a failure is logged, not turned into an HTTP 500 for Slack."""
    try:
        await method(**kwargs)
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else "unknown"
        log.warning("Slack call failed after ack", extra={"error": error})


async def _errors(ack: Ack, view: dict[str, Any], errors: dict[str, str], instead: Any) -> bool:
    """Errors beside their questions; if the submitted form (an older version) lacks those
    questions, Slack would refuse the answer outright, so the form is replaced by `instead`."""
    shown = {key: clip(text, 2000) for key, text in errors.items()}
    if set(shown) <= block_ids(view):
        return await ack(response_action="errors", errors=shown)
    return await ack(response_action="update", view=instead)


def _submission_key(view: dict[str, Any]) -> str:
    """Once-only key of a submitted form: its view and what it held. A replay of the request
    is recognised; the same form corrected after an error shown in it is a new submission."""
    held = json.dumps(view_values(view), sort_keys=True, default=str)
    digest = hashlib.sha256(held.encode()).hexdigest()[:24]
    return f"slack-view:{str(view.get('id'))[:64]}:{digest}"


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    """A modal's private_metadata as we wrote it; {} for anything else (an older version's)."""
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _button(callback_id: Any) -> ActionId | None:
    """The action of an action modal's callback id, or None if this version has no such action."""
    if not isinstance(callback_id, str) or not callback_id.startswith(ACTION_PREFIX):
        return None
    try:
        return ActionId(callback_id.removeprefix(ACTION_PREFIX))
    except ValueError:
        return None


def _instant(button: ActionId) -> dict[str, Any]:
    """Answers for buttons whose action needs no questions."""
    return {}


@functools.cache
def _help_payload() -> dict[str, Any]:
    return _reply_payload(Reply(HELP))


def _reply_payload(reply: Reply) -> dict[str, Any]:
    message = Message(Recipient.person("-"), reply.text, reply.facts, reply.buttons, kind="reply")
    return {
        "text": clip(escape(reply.text), 3000),
        "blocks": [b.to_dict() for b in message_blocks(message)],
    }


class Ack:
    """Bolt's ack, once: says whether this answer reached Slack (False once the budget ran out).

    A listener's `await ack()` returns once the answer is on its way and no other request is
    waiting for its own (`InFlight.quiet`): what a listener does after its ack is slow work
    that must not hold up anyone's answer.
    """

    def __init__(
        self,
        ack: Any,
        answered: asyncio.Future[None],
        quiet: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._ack = ack
        self._answered = answered
        self._quiet = quiet
        self.done = False

    async def __call__(self, **kwargs: Any) -> bool:
        if not await self.answer(**kwargs):
            return False
        if self._quiet is not None:
            await self._quiet()
        return True

    async def answer(self, **kwargs: Any) -> bool:
        """Answer Slack now, unless it already was."""
        if self.done:
            return False
        self.done = True
        await self._ack(**kwargs)
        _settle(self._answered)
        return True


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Budget:
    """Runs a listener as a task; Slack is answered at its ack, or a plain ack after `seconds`.

    `inflight`, if given, is the server's count of requests awaiting their answers: listeners'
    work after an ack waits until those are answered.
    """

    def __init__(self, seconds: float, inflight: InFlight | None = None) -> None:
        self.seconds = seconds
        self.inflight = inflight
        self.running: set[asyncio.Task[None]] = set()
        # Each request's deadline, in the order they came (every budget is as long): one
        # timer for the earliest, rather than a timer each for the event loop to sort.
        self._deadlines: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def _until(self, answered: asyncio.Future[None]) -> None:
        """Answer for this request when the budget runs out, if its listener has not."""
        loop = asyncio.get_running_loop()
        while self._deadlines and self._deadlines[0][1].done():
            self._deadlines.popleft()  # answered in time, as nearly all are
        self._deadlines.append((loop.time() + self.seconds, answered))
        if self._timer is None:
            self._timer = loop.call_at(self._deadlines[0][0], self._expire)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = None
        while self._deadlines and (
            self._deadlines[0][1].done() or self._deadlines[0][0] <= loop.time()
        ):
            _settle(self._deadlines.popleft()[1])
        if self._deadlines:
            self._timer = loop.call_at(self._deadlines[0][0], self._expire)

    def wrap(
        self, listener: Callable[..., Coroutine[Any, Any, None]]
    ) -> Callable[..., Awaitable[None]]:
        """A listener Bolt can call with the arguments this one takes."""

        async def run(
            ack: Any,
            body: dict[str, Any],
            client: AsyncWebClient,
            command: dict[str, Any] | None = None,
            respond: Any = None,
        ) -> None:
            loop = asyncio.get_running_loop()
            answered: asyncio.Future[None] = loop.create_future()
            once = Ack(ack, answered, self.inflight.quiet if self.inflight else None)
            kwargs: dict[str, Any] = {"ack": once, "body": body, "client": client}
            if command is not None:
                kwargs.update(command=command, respond=respond)
                kwargs.pop("body")
            task = asyncio.create_task(listener(**kwargs))
            self.running.add(task)

            def finished(task: asyncio.Task[None]) -> None:
                self.running.discard(task)
                _log_failure(task)
                _settle(answered)

            task.add_done_callback(finished)
            # Answer Slack as soon as the listener has acked (what follows the ack, opening a
            # modal or updating a message, carries on in the background), or when the budget
            # runs out, whichever is first. This runs for every request: one future, no timer.
            self._until(answered)
            await answered
            if not once.done:
                # Slack must hear from us in time; the listener finishes in the background.
                await once.answer()

        return run

    async def settle(self) -> None:
        """Wait for listeners still running after their ack (shutdown, and tests)."""
        while self.running:
            await asyncio.gather(*list(self.running), return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Slack listener failed", exc_info=task.exception())


def build_slack_app(
    conversations: Conversations,
    client: AsyncWebClient,
    signing_secret: str,
    kick: Callable[[], None],
    budget: Budget,
    limiter: RateLimiter | None = None,
) -> AsyncApp:
    """The Bolt app, its listeners wired to the conversations, each under the time budget."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
    )
    slack = SlackConversations(conversations, kick, limiter)

    async def drop_retries(
        req: Any, resp: BoltResponse, next: Callable[[], Awaitable[Any]]
    ) -> BoltResponse:
        # Slack resends events it thinks were missed; Bolt does not drop them (DESIGN.md).
        # On the event listener only: as app-wide middleware it cost every command and click
        # Bolt's building of its arguments, a tenth of the bot's time per request.
        if req.headers.get("x-slack-retry-num"):
            return BoltResponse(status=200, body="")
        await next()
        return resp

    within = budget.wrap
    # One listener for each kind of request, routed by our own code (`on_block_action`,
    # `on_view`). Bolt's block_action ignores a `callback_id` constraint, so a change in an
    # action's modal went to the intake's listener; and each listener Bolt tries before the
    # one that matches costs it a full build of the listener arguments from the payload.
    app.command("/escalate")(within(slack.on_command))
    app.block_action(re.compile(".*"))(within(slack.on_block_action))
    app.view(re.compile(".*"))(within(slack.on_view))
    app.event("app_home_opened", middleware=[drop_retries])(within(slack.on_home))
    return app
