"""The action flows: what to ask before acting on a dispute, and the command the answers make.

Acknowledge, add a note, escalate, propose a resolution, confirm or reject it, give a reason
for delay, record a learning point, withdraw. Imports only the domain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bot.disputes import SHORT_LIMIT, SUMMARY_LIMIT, Action
from bot.flows.engine import Answers, Choice, Flow, FlowContext, Question
from bot.messages import ActionId

MAX_ACTIONS = 3
# Not a question: the stage a person saw when they pressed Escalate, which a platform passes
# with the answers, so two managers pressing at once escalate the dispute one stage, not two.
FROM_STAGE = "from_stage"


# Dates a slip of the year puts centuries away are refused: a review date is a timer, and
# reaching it would load the bank holidays of every year up to it (or fail past 9999).
MAX_DAYS_AHEAD = 2 * 366
MAX_DAYS_BACK = 366


def _not_past(value: Any, answers: Answers, ctx: FlowContext) -> str | None:
    if value < ctx.today:
        return "The review date cannot be in the past."
    if value > ctx.today + timedelta(days=MAX_DAYS_AHEAD):
        return "That is more than two years away: please check the year."
    return None


def _not_future(value: Any, answers: Answers, ctx: FlowContext) -> str | None:
    if value > ctx.today:
        return "A discussion cannot have happened in the future."
    if value < ctx.today - timedelta(days=MAX_DAYS_BACK):
        return "That is more than a year ago: please check the year."
    return None


def _everyone(answers: Answers, ctx: FlowContext) -> list[Choice]:
    return [
        Choice(p.id, f"{p.name} ({ctx.directory.agency_name(p.agency)})")
        for p in sorted(ctx.directory, key=lambda p: p.name)
    ]


def _more(n: int) -> Callable[[Answers, FlowContext], bool]:
    def when(answers: Answers, ctx: FlowContext) -> bool:
        return n == 1 or bool(answers.get(f"more_{n - 1}"))

    return when


def _has_action(n: int) -> Callable[[Answers, FlowContext], bool]:
    asked = _more(n)

    def when(answers: Answers, ctx: FlowContext) -> bool:
        return asked(answers, ctx) and bool(answers.get(f"action_{n}"))

    return when


def _action_questions() -> list[Question]:
    out: list[Question] = []
    for n in range(1, MAX_ACTIONS + 1):
        asked = _more(n)
        out += [
            Question(
                f"action_{n}",
                f"Agreed action {n}",
                "short_text",
                max_length=SHORT_LIMIT * 2,
                when=asked,
                required=n > 1,
                hint="Reply 'skip' if there is no agreed action." if n == 1 else None,
            ),
            Question(
                f"owner_{n}",
                f"Who owns action {n}?",
                "choice",
                choices=_everyone,
                when=_has_action(n),
            ),
            Question(
                f"review_{n}",
                f"When should action {n} be reviewed?",
                "date",
                check=_not_past,
                when=_has_action(n),
            ),
        ]
        if n < MAX_ACTIONS:
            out.append(
                Question(
                    f"more_{n}",
                    "Add another agreed action?",
                    "yes_no",
                    when=_has_action(n),
                )
            )
    return out


@dataclass(frozen=True)
class ActionFlow:
    """A flow and the service action its answers feed."""

    button: ActionId
    action: Action
    flow: Flow

    def command(self, answers: Answers, ctx: FlowContext) -> dict[str, Any]:
        """The keyword arguments for the service action."""
        return _COMMANDS[self.button](answers, ctx)


def _note_command(a: Answers, ctx: FlowContext) -> dict[str, Any]:
    held: date | None = a.get("held_on")
    held_at = None
    if held is not None and held != ctx.today:
        held_at = ctx.calendar.opening_of(held)
    return {"text": a["text"], "with_whom": a.get("with_whom"), "held_at": held_at}


def _propose_command(a: Answers, ctx: FlowContext) -> dict[str, Any]:
    actions = []
    for n in range(1, MAX_ACTIONS + 1):
        if a.get(f"action_{n}"):
            actions.append((a[f"action_{n}"], a[f"owner_{n}"], a[f"review_{n}"]))
    return {"outcome": a["outcome"], "actions": actions}


_COMMANDS: dict[ActionId, Any] = {
    ActionId.ACKNOWLEDGE: lambda a, ctx: {},
    ActionId.ADD_NOTE: _note_command,
    ActionId.ESCALATE: lambda a, ctx: {"reason": a["reason"], "from_stage": a.get(FROM_STAGE)},
    ActionId.PROPOSE_RESOLUTION: _propose_command,
    ActionId.CONFIRM_RESOLUTION: lambda a, ctx: {"confirm": True},
    ActionId.REJECT_RESOLUTION: lambda a, ctx: {"confirm": False, "reason": a["reason"]},
    ActionId.RECORD_DELAY_REASON: lambda a, ctx: {
        "reason": a["reason"],
        "safety_confirmed": a["safety_confirmed"],
    },
    ActionId.RECORD_LEARNING: lambda a, ctx: {"text": a["text"]},
    ActionId.WITHDRAW: lambda a, ctx: {"reason": a["reason"]},
    ActionId.SNOOZE: lambda a, ctx: {},
    ActionId.SEND_RECORD: lambda a, ctx: {},
    ActionId.REVIEW_ACTIONS: lambda a, ctx: {
        "implemented": a["implemented"],
        "reason": a.get("reason"),
    },
}


def action_flows() -> dict[ActionId, ActionFlow]:
    """Every action flow, by the button that starts it."""
    flows = [
        ActionFlow(
            ActionId.ACKNOWLEDGE, Action.ACKNOWLEDGE, Flow("acknowledge", "Acknowledge", [])
        ),
        ActionFlow(
            ActionId.ADD_NOTE,
            Action.ADD_NOTE,
            Flow(
                "add_note",
                "Add a note",
                [
                    Question(
                        "text",
                        "What was discussed and agreed?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                        hint="A contemporaneous record: who said what, and what was agreed.",
                    ),
                    Question(
                        "with_whom",
                        "Who was the discussion with?",
                        "short_text",
                        required=False,
                        max_length=SHORT_LIMIT,
                    ),
                    Question(
                        "held_on",
                        "When did it take place?",
                        "date",
                        check=_not_future,
                        default=lambda a, ctx: ctx.today,
                        hint="Today if you leave it blank.",
                    ),
                ],
            ),
        ),
        ActionFlow(
            ActionId.ESCALATE,
            Action.ESCALATE,
            Flow(
                "escalate",
                "Escalate",
                [
                    Question(
                        "reason",
                        "Why does this need to go to the next stage?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                    ),
                ],
            ),
        ),
        ActionFlow(
            ActionId.PROPOSE_RESOLUTION,
            Action.PROPOSE_RESOLUTION,
            Flow(
                "propose_resolution",
                "Propose a resolution",
                [
                    Question(
                        "outcome",
                        "What outcome has been agreed?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                    ),
                    *_action_questions(),
                ],
            ),
        ),
        ActionFlow(
            ActionId.CONFIRM_RESOLUTION,
            Action.RESPOND_TO_RESOLUTION,
            Flow("confirm_resolution", "Confirm the resolution", []),
        ),
        ActionFlow(
            ActionId.REJECT_RESOLUTION,
            Action.RESPOND_TO_RESOLUTION,
            Flow(
                "reject_resolution",
                "Reject the resolution",
                [
                    Question(
                        "reason",
                        "Why can't your agency accept this resolution?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                    ),
                ],
            ),
        ),
        ActionFlow(
            ActionId.RECORD_DELAY_REASON,
            Action.RECORD_DELAY_REASON,
            Flow(
                "record_delay_reason",
                "Reason for delay",
                [
                    Question(
                        "reason",
                        "Why is this taking longer than the policy's target?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                    ),
                    Question(
                        "safety_confirmed",
                        "Has your manager confirmed the child's safety has not been compromised by the delay?",
                        "yes_no",
                    ),
                ],
            ),
        ),
        ActionFlow(
            ActionId.RECORD_LEARNING,
            Action.RECORD_LEARNING,
            Flow(
                "record_learning",
                "Record a learning point",
                [
                    Question(
                        "text",
                        "What should the partnership learn from this?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                    ),
                ],
            ),
        ),
        # Nothing to ask: the record goes privately to whoever may see the dispute
        # (bot.conversation hands it to bot.archive; the check is the VIEW permission).
        ActionFlow(
            ActionId.SEND_RECORD, Action.VIEW, Flow("send_record", "Send me the record", [])
        ),
        ActionFlow(
            ActionId.WITHDRAW,
            Action.WITHDRAW,
            Flow(
                "withdraw",
                "Withdraw",
                [
                    Question(
                        "reason",
                        "Why are you withdrawing this dispute?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                    ),
                ],
            ),
        ),
        ActionFlow(ActionId.SNOOZE, Action.SNOOZE, Flow("snooze", "Remind me tomorrow", [])),
        ActionFlow(
            ActionId.REVIEW_ACTIONS,
            Action.REVIEW_ACTIONS,
            Flow(
                "review_actions",
                "Review agreed actions",
                [
                    Question(
                        "implemented",
                        "Were the agreed actions implemented?",
                        "yes_no",
                        hint="If not, the dispute is reopened at its stage.",
                    ),
                    Question(
                        "reason",
                        "What was not done, and why?",
                        "long_text",
                        max_length=SUMMARY_LIMIT,
                        when=lambda a, ctx: a.get("implemented") is False,
                    ),
                ],
            ),
        ),
    ]
    return {f.button: f for f in flows}
