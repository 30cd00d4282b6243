"""A terminal platform: chat with the bot as a person from the directory.

Questions come one at a time, buttons are numbered choices, and messages the bot sends to
other people are shown with who receives them. Same service, store and flows as Slack and Teams.
"""

from __future__ import annotations

import asyncio
import itertools
import textwrap
from collections.abc import Callable
from typing import TextIO

from bot.adapters.base import Delivered
from bot.conversation import Conversations, Reply
from bot.directory import Directory, Person
from bot.flows.engine import FlowRunner, Question
from bot.messages import ActionId, Button, Message, plain
from bot.outbox import Dispatcher
from bot.service import Outcome

WIDTH = 88


class ConsolePlatform:
    """Prints every message; the current person's buttons become numbered choices."""

    name = "console"

    def __init__(self, out: TextIO, directory: Callable[[], Directory]) -> None:
        self.out = out
        self.directory = directory
        self.current: Person | None = None
        self.buttons: list[Button] = []
        self._ids = itertools.count(1)

    def can_reach(self, message: Message) -> bool:
        """The console shows every message."""
        return True

    async def send(
        self, message: Message, *, thread_id: str | None, maybe_sent: bool = False
    ) -> Delivered:
        """Print the message with who it is for."""
        self.show(message)
        message_id = f"console-{next(self._ids)}"
        return Delivered(
            message_id, thread_id or (message_id if message.kind == "thread_root" else None)
        )

    def show(self, message: Message) -> None:
        """Render a message as text."""
        r = message.recipient
        if r.kind == "channel":
            where = f"#{r.id} channel" + (
                f", thread {message.ref}" if message.kind == "thread" else ""
            )
        elif self.current is not None and r.id == self.current.id:
            where = "you"
        else:
            person = self.directory().get(r.id)
            where = (
                f"{person.name} ({self.directory().agency_name(person.agency)})" if person else r.id
            )
        self.write(f"\n── to {where} " + "─" * max(0, WIDTH - 7 - len(where)))
        self.write(_wrap(message.text))
        for label, value in message.facts:
            self.write(_wrap(f"{label}: {value}", indent="  "))
        if message.buttons:
            mine = self.current is not None and r.kind == "person" and r.id == self.current.id
            if mine:
                start = len(self.buttons) + 1
                self.buttons.extend(message.buttons)
                choices = "  ".join(
                    f"[{i}] {b.label}" for i, b in enumerate(message.buttons, start=start)
                )
            else:
                choices = "  ".join(f"[{b.label}]" for b in message.buttons)
            self.write(_wrap(choices, indent="  "))

    def write(self, text: str) -> None:
        """Print a line."""
        self.out.write(plain(text) + "\n")
        self.out.flush()


def _wrap(text: str, indent: str = "") -> str:
    lines = []
    for paragraph in text.splitlines() or [""]:
        lines.append(
            textwrap.fill(paragraph, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")
            or indent
        )
    return "\n".join(lines)


class ConsoleChat:
    """The read-answer loop of `escalation-bot chat`."""

    def __init__(
        self,
        conversations: Conversations,
        dispatcher: Dispatcher,
        platform: ConsolePlatform,
        person: Person | None,
        *,
        stdin: TextIO,
    ) -> None:
        self.conversations = conversations
        self.dispatcher = dispatcher
        self.platform = platform
        self.stdin = stdin
        self.person = person
        platform.current = person

    @property
    def user_key(self) -> str:
        """Whose saved progress this is."""
        return f"console:{self.person.id if self.person else 'guest'}"

    async def ask(self, prompt: str) -> str | None:
        """One line from the person, or None at end of input."""
        self.platform.out.write(prompt)
        self.platform.out.flush()
        line = await asyncio.to_thread(self.stdin.readline)
        if not line:
            return None
        return line.rstrip("\n")

    def say(self, text: str) -> None:
        """Print the bot's words."""
        self.platform.write(_wrap(text))

    async def run(self) -> int:
        """Chat until the person types quit or input ends."""
        self.greet()
        await self.flush()
        while True:
            line = await self.ask("\n> ")
            if line is None:
                return 0
            text = plain(line).strip()
            if not text:
                continue
            if text.lower() in ("quit", "exit", "bye"):
                self.say("Goodbye.")
                return 0
            await self.handle(text)
            await self.flush()

    def greet(self) -> None:
        """Say who the person is and how to start."""
        d = self.conversations.service.directory
        if self.person is None:
            self.say(
                "Hello. You are not in the partnership directory; type escalate to log a disagreement."
            )
        else:
            self.say(
                f"Hello {self.person.name} ({d.agency_name(self.person.agency)}). Type help for commands, quit to leave."
            )

    async def flush(self) -> None:
        """Deliver whatever the bot has queued."""
        await self.dispatcher.run_once()

    async def handle(self, text: str) -> None:
        """One command line."""
        words = text.split()
        verb = words[0].lower().lstrip("/")
        if verb.isdigit():
            await self.press(int(verb))
            return
        if verb == "as" and len(words) == 2:
            self.switch(words[1])
            return
        if verb == "help":
            self.show_reply(self.conversations.command("help", self.person) or Reply(""))
            self.say(
                "  as PERSON_ID             continue as someone else from the directory\n  NUMBER                   press a numbered button"
            )
            return
        if verb != "escalate" and verb not in ("list", "status", "timeline", "digest"):
            self.say(f"I don't know '{words[0][:30]}'. Type help for commands.")
            return
        reply = self.conversations.command(
            text if verb == "escalate" else f"escalate {text}", self.person
        )
        if reply is not None:
            self.show_reply(reply)
            return
        await self.intake()

    def switch(self, person_id: str) -> None:
        """Continue as another person from the directory."""
        person = self.conversations.service.directory.get(person_id)
        if person is None:
            self.say(f"Nobody in the directory has the id '{person_id[:40]}'.")
            return
        self.person = person
        self.platform.current = person
        self.platform.buttons = []
        self.greet()

    def show_reply(self, reply: Reply) -> None:
        """A private answer, with numbered buttons."""
        self.platform.show(reply.as_message(self.person.id if self.person else "guest"))

    async def questions(self, runner: FlowRunner) -> bool:
        """Ask a flow's questions one at a time; False if the person stopped or input ended."""
        while (q := runner.pending()) is not None:
            if q.id == "confirm" and runner.flow.summary is not None:
                self.say("\nPlease check:")
                for label, value in runner.flow.summary(runner.state.answers, runner.ctx):
                    self.say(f"  {label} {value}")
            self.say("")
            self.say(q.prompt + (f"  ({q.hint})" if q.hint else ""))
            self.show_options(q, runner)
            line = await self.ask("  ? ")
            if line is None or line.strip().lower() in ("cancel", "quit"):
                if runner.flow.name == "intake":
                    self.say("Stopped. Your answers so far are saved: type escalate to carry on.")
                else:
                    self.say("Stopped; nothing was changed.")
                return False
            step = runner.answer(q.id, line)
            if not step.accepted:
                self.say(f"  {step.error}")
            for notice in step.notices:
                self.say(("URGENT - " if notice.urgent else "") + notice.text)
            if runner.flow.name == "intake":
                self.conversations.on_notices(self.user_key, runner, step.notices)
                self.conversations.save(self.user_key, runner)
                await self.flush()
            if runner.state.stopped:
                return False
        return True

    def show_options(self, q: Question, runner: FlowRunner) -> None:
        """Numbered choices for choice and person questions."""
        if q.kind in ("choice", "person"):
            for i, option in enumerate(q.options(runner.state.answers, runner.ctx), start=1):
                self.say(f"  {i}. {option.label}")
        elif q.kind in ("yes_no", "confirm"):
            self.say("  yes / no")

    async def intake(self) -> None:
        """The /escalate flow, question by question, resuming saved progress."""
        conv = self.conversations
        runner = conv.resume(self.user_key, self.person)
        if runner.state.answers:
            self.say(
                "Carrying on from where you left off (type cancel to stop; your answers are kept)."
            )
        if not await self.questions(runner):
            if runner.state.stopped:
                conv.forget(self.user_key, runner.flow.name)
            return
        outcome = conv.finish_intake(self.user_key, runner)
        self.report(outcome)
        if outcome.ok and self.person is None and outcome.dispute is not None:
            self.person = conv.service.directory.get(outcome.dispute.details.raised_by)
            self.platform.current = self.person

    async def press(self, number: int) -> None:
        """Press a numbered button shown earlier."""
        if self.person is None or not 1 <= number <= len(self.platform.buttons):
            self.say("There is no button with that number.")
            return
        button = self.platform.buttons[number - 1]
        if button.action == ActionId.VIEW_DETAILS:
            self.show_reply(self.conversations.status_reply(button.ref, self.person))
            return
        flow = self.conversations.action_flow(button.action)
        self.say(f"{flow.flow.title}: {button.ref}")
        runner = FlowRunner(flow.flow, self.conversations.context(self.person))
        if not await self.questions(runner):
            return
        self.report(
            self.conversations.run_action(
                button.ref, self.person, button.action, runner.state.answers
            )
        )

    def report(self, outcome: Outcome) -> None:
        """The result of a command."""
        self.say(outcome.text if outcome.ok else f"Not done: {outcome.text}")
