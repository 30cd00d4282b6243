"""The flow engine: questions, answers, validation, branching and saved progress.

Platform-neutral: a platform renders a flow all at once (a Slack modal, an Adaptive Card) or
one question at a time (the console). Imports only the domain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from bot.directory import Directory, Person
from bot.messages import plain
from bot.policy import Policy
from bot.workdays import WorkingCalendar, format_day

Kind = Literal["choice", "short_text", "long_text", "date", "person", "yes_no", "confirm"]
SHORT_TEXT_LIMIT = 200
LONG_TEXT_LIMIT = 3000


@dataclass(frozen=True)
class Choice:
    """One option of a choice question."""

    value: str
    label: str


@dataclass
class FlowContext:
    """What a flow may consult: the partnership, the person, and the time."""

    directory: Directory
    policy: Policy
    calendar: WorkingCalendar
    now: datetime
    person: Person | None
    display_name: str | None = None

    @property
    def today(self) -> date:
        """The local date now."""
        return self.calendar.local(self.now).date()


Answers = dict[str, Any]
ChoicesFn = Callable[[Answers, FlowContext], list[Choice]]
WhenFn = Callable[[Answers, FlowContext], bool]
CheckFn = Callable[[Any, Answers, FlowContext], str | None]
DefaultFn = Callable[[Answers, FlowContext], Any]


@dataclass(frozen=True)
class Question:
    """A question of a flow, with its validation and the condition for asking it."""

    id: str
    prompt: str
    kind: Kind
    hint: str | None = None
    required: bool = True
    max_length: int | None = None
    choices: ChoicesFn | None = None
    agency_from: str | None = None  # person questions: the answer naming the agency to pick from
    when: WhenFn | None = None
    check: CheckFn | None = None
    default: DefaultFn | None = None

    @property
    def limit(self) -> int:
        """The longest text this question takes."""
        if self.max_length is not None:
            return self.max_length
        return LONG_TEXT_LIMIT if self.kind == "long_text" else SHORT_TEXT_LIMIT

    def applies(self, answers: Answers, ctx: FlowContext) -> bool:
        """Whether this question is asked, given the answers so far."""
        return self.when is None or self.when(answers, ctx)

    def options(self, answers: Answers, ctx: FlowContext) -> list[Choice]:
        """The choices offered (choice and person questions)."""
        if self.kind == "person":
            agency = answers.get(self.agency_from or "")
            people = sorted(
                ctx.directory.in_agency(agency) if agency else ctx.directory, key=lambda p: p.name
            )
            return [Choice(p.id, f"{p.name}{', ' + p.title if p.title else ''}") for p in people]
        if self.kind in ("yes_no", "confirm"):
            return [Choice("yes", "Yes"), Choice("no", "No")]
        return self.choices(answers, ctx) if self.choices else []

    def default_value(self, answers: Answers, ctx: FlowContext) -> Any:
        """The answer used when none is given (or None)."""
        return self.default(answers, ctx) if self.default else None


@dataclass
class Notice:
    """Something to tell the person mid-flow; `stop` ends the flow there."""

    text: str
    stop: bool = False
    urgent: bool = False


@dataclass
class Flow:
    """A conversation: ordered questions, hooks after answers, and what to do at the end."""

    name: str
    title: str
    questions: list[Question]
    after: Callable[[str, Any, Answers, FlowContext], Notice | None] | None = None
    summary: Callable[[Answers, FlowContext], list[tuple[str, str]]] | None = None

    def question(self, question_id: str) -> Question:
        """The question with this id."""
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(question_id)


@dataclass
class FlowState:
    """A person's progress through a flow, saved between messages."""

    flow: str
    answers: Answers = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    stopped: bool = False

    def to_data(self) -> dict[str, Any]:
        """JSON-ready data for the store."""
        return {
            "flow": self.flow,
            "answers": {k: _to_json(v) for k, v in self.answers.items()},
            "context": self.context,
            "done": self.done,
            "stopped": self.stopped,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> FlowState:
        """Rebuild saved progress."""
        answers = {k: _from_json(v) for k, v in data.get("answers", {}).items()}
        return cls(
            data["flow"],
            answers,
            data.get("context", {}),
            data.get("done", False),
            data.get("stopped", False),
        )


def _to_json(value: Any) -> Any:
    return {"date": value.isoformat()} if isinstance(value, date) else value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"date"}:
        return date.fromisoformat(value["date"])
    return value


@dataclass
class Step:
    """The result of giving an answer: an error to show, notices, and whether it was taken."""

    accepted: bool
    error: str | None = None
    notices: list[Notice] = field(default_factory=list)


class FlowRunner:
    """Drives a flow for one person, one answer or all answers at a time."""

    def __init__(self, flow: Flow, ctx: FlowContext, state: FlowState | None = None) -> None:
        self.flow = flow
        self.ctx = ctx
        self.state = state or FlowState(flow.name)

    def pending(self) -> Question | None:
        """The next question to ask, or None when every applicable question is answered."""
        if self.state.stopped:
            return None
        for q in self.flow.questions:
            if q.applies(self.state.answers, self.ctx) and q.id not in self.state.answers:
                return q
        return None

    def applicable(self, answers: Answers | None = None) -> list[Question]:
        """The questions that apply given these answers (for rendering all at once)."""
        answers = self.state.answers if answers is None else answers
        return [q for q in self.flow.questions if q.applies(answers, self.ctx)]

    def answer(self, question_id: str, raw: Any) -> Step:
        """Parse, validate and store one answer; run the flow's hook."""
        q = self.flow.question(question_id)
        value, error = parse_answer(q, raw, self.state.answers, self.ctx)
        if error is not None:
            return Step(False, error)
        self.state.answers[q.id] = value
        # Answers to later questions may no longer apply once an earlier one changes.
        self._drop_inapplicable()
        notices: list[Notice] = []
        if self.flow.after is not None:
            notice = self.flow.after(q.id, value, self.state.answers, self.ctx)
            if notice is not None:
                notices.append(notice)
                if notice.stop:
                    self.state.stopped = True
        return Step(True, None, notices)

    def answer_all(self, raw: dict[str, Any]) -> tuple[dict[str, str], list[Notice]]:
        """Take a whole form at once; return errors by question id, and notices."""
        errors: dict[str, str] = {}
        notices: list[Notice] = []
        for q in self.flow.questions:
            if not q.applies(self.state.answers, self.ctx):
                continue
            step = self.answer(q.id, raw.get(q.id))
            if not step.accepted:
                errors[q.id] = step.error or "please check this answer"
            notices.extend(step.notices)
            if self.state.stopped:
                break
        return errors, notices

    def _drop_inapplicable(self) -> None:
        for q in self.flow.questions:
            if q.id in self.state.answers and not q.applies(self.state.answers, self.ctx):
                del self.state.answers[q.id]

    @property
    def complete(self) -> bool:
        """Every applicable question answered, and the flow not stopped."""
        return not self.state.stopped and self.pending() is None


_YES = {"yes", "y", "true", "1", "yeah", "yep", "on"}
_NO = {"no", "n", "false", "0", "nope", "off"}
_SKIP = {"", "skip", "none", "-", "n/a", "not known", "unknown", "don't know", "dont know"}


def parse_answer(
    q: Question, raw: Any, answers: Answers, ctx: FlowContext
) -> tuple[Any, str | None]:
    """Turn raw input into a value, or give a plain-English error naming what to fix."""
    if isinstance(raw, str):
        raw = plain(raw).strip()
    if raw is None or (isinstance(raw, str) and raw.lower() in _SKIP and q.kind != "confirm"):
        default = q.default_value(answers, ctx)
        if default is not None:
            raw = default
        elif not q.required:
            return None, None
        else:
            # A required question cannot be skipped: "skip" or "n/a" was being stored as the
            # answer itself (a decision disputed of "skip", a case reference of "none").
            return None, f"Please answer: {q.prompt}"
    value: Any
    if q.kind in ("yes_no", "confirm"):
        value = _parse_yes_no(raw)
        if value is None:
            return None, "Please answer yes or no."
    elif q.kind in ("choice", "person"):
        options = q.options(answers, ctx)
        value = _pick(options, raw)
        if value is None:
            what = "person" if q.kind == "person" else "option"
            return (
                None,
                f"'{clip_for_error(raw)}' is not one of the {what}s offered; reply with its number or its name.",
            )
    elif q.kind == "date":
        value = raw if isinstance(raw, date) else parse_date(str(raw), ctx.today)
        if value is None:
            return (
                None,
                f"'{clip_for_error(raw)}' is not a date I understand; write it like 24/11/2026, 2026-11-24, today or yesterday.",
            )
    else:
        value = str(raw)
        if len(value) > q.limit:
            return (
                None,
                f"That is {len(value):,} characters; please keep it under {q.limit:,} (a summary is enough: the details stay in your agency's records).",
            )
        if q.required and not value.strip():
            return None, f"Please answer: {q.prompt}"
    if q.check is not None:
        problem = q.check(value, answers, ctx)
        if problem is not None:
            return None, problem
    return value, None


def clip_for_error(raw: Any) -> str:
    """Echo a bad answer briefly."""
    text = str(raw)
    return text if len(text) <= 40 else text[:39] + "…"


def _parse_yes_no(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    return None


def _pick(options: list[Choice], raw: Any) -> str | None:
    text = str(raw).strip()
    # isdecimal, not isdigit: "²" is a digit int() refuses; and a few characters only, since
    # int() refuses over 4,300 digits (a pasted number) with a ValueError.
    if text.isdecimal() and len(text) <= 6 and 1 <= int(text) <= len(options):
        return options[int(text) - 1].value
    lowered = text.lower()
    for option in options:
        if lowered in (option.value.lower(), option.label.lower()):
            return option.value
    matches = [o for o in options if lowered and lowered in o.label.lower()]
    return matches[0].value if len(matches) == 1 else None


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}


def parse_date(text: str, today: date) -> date | None:
    """Dates as people write them in the UK: 24/11/2026, 2026-11-24, 24 Nov, today, yesterday."""
    text = text.strip().lower()
    if text == "today":
        return today
    if text == "yesterday":
        return today - timedelta(days=1)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        match = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2}|\d{4}))?", text)
        if match:
            day, month, year = match.groups()
            y = int(year) + (2000 if year and len(year) == 2 else 0) if year else today.year
            return date(y, int(month), int(day))
        match = re.fullmatch(
            r"(?:[a-z]+,?\s+)?(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3})[a-z]*\.?(?:\s+(\d{4}))?", text
        )
        if match and match.group(2) in _MONTHS:
            day, month, year = match.groups()
            return date(int(year) if year else today.year, _MONTHS[month], int(day))
    except ValueError:
        return None
    return None


def describe(value: Any, q: Question, answers: Answers, ctx: FlowContext) -> str:
    """An answer in words, for a summary."""
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, date):
        return format_day(value)
    if q.kind in ("choice", "person"):
        for option in q.options(answers, ctx):
            if option.value == value:
                return option.label
    return str(value)
