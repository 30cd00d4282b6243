"""Escalation policies as data: stages, steps, deadline rules, and the presets that ship.

Pure domain: imports the standard library, pydantic and the YAML loader only; never a
platform, database, web or scheduler library. Deadlines are computed with a WorkingCalendar.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.workdays import NATIONS, WorkingCalendar
from bot.yamlsource import (
    ConfigError,
    Located,
    Problem,
    load_yaml_file,
    load_yaml_text,
    parse_clock_time,
    problems_from_validation,
)

PRESETS = ("wolverhampton", "lincolnshire", "barnet", "harrow", "worcestershire")

RuleKind = Literal["working_days", "hours", "same_working_day", "immediately", "no_fixed_timescale"]
Anchor = Literal["disagreement", "stage_start", "previous_step", "resolution"]
Condition = Literal["after_resolution", "urgent", "non_urgent", "exceptional"]
DoneWhen = Literal["raised", "acknowledged", "discussed", "resolution_proposed", "resolved"]
Party = Literal["raising", "receiving"]

_RULE_PATTERNS: list[tuple[re.Pattern[str], RuleKind]] = [
    (re.compile(r"^(\d+)\s+working\s+days?$"), "working_days"),
    (re.compile(r"^(\d+)\s+(?:clock\s+)?hours?$"), "hours"),
    (re.compile(r"^same\s+working\s+day$"), "same_working_day"),
    (re.compile(r"^immediately$"), "immediately"),
    (re.compile(r"^no\s+fixed\s+timescale$"), "no_fixed_timescale"),
]
# No escalation step takes years: a bigger number is a slip of the keyboard, and counting it
# would load millennia of bank holidays and then fail on the year 9999 when a dispute opens.
MAX_AMOUNT = 1000
RULE_HELP = (
    "write one of: 'N working days', 'N hours', 'same working day', 'immediately', "
    "'no fixed timescale'"
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeadlineRule(_Frozen):
    """How long a step may take: N working days, N clock hours, same day, now, or no limit."""

    kind: RuleKind
    amount: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # `deadline: 2` is the likeliest slip; pydantic alone would say "a valid dictionary".
            raise ValueError(
                f"{value} on its own is not a deadline; write the deadline as "
                f"'{value} working days', '24 hours', 'same working day', 'immediately' "
                "or 'no fixed timescale'"
            )
        if isinstance(value, str):
            text = " ".join(value.strip().lower().split())
            for pattern, kind in _RULE_PATTERNS:
                match = pattern.match(text)
                if match:
                    amount = int(match.group(1)) if match.groups() else None
                    return {"kind": kind, "amount": amount}
            raise ValueError(f"'{value}' is not a deadline rule; {RULE_HELP}")
        return value

    @model_validator(mode="after")
    def _check_amount(self) -> DeadlineRule:
        counted = self.kind in ("working_days", "hours")
        if counted and (self.amount is None or self.amount < 1):
            raise ValueError(
                f"a '{self.kind.replace('_', ' ')}' rule needs a whole number of 1 or more"
            )
        if not counted and self.amount is not None:
            raise ValueError(f"a '{self.kind.replace('_', ' ')}' rule takes no number")
        if counted and self.amount is not None and self.amount > MAX_AMOUNT:
            raise ValueError(
                f"{self.amount:,} {self.kind.replace('_', ' ')} is longer than any step of a "
                f"policy takes; the most is {MAX_AMOUNT:,}"
            )
        return self

    def describe(self) -> str:
        """Plain English, e.g. '2 working days'."""
        if self.kind == "working_days":
            return f"{self.amount} working day{'s' if self.amount != 1 else ''}"
        if self.kind == "hours":
            return f"{self.amount} hour{'s' if self.amount != 1 else ''}"
        return self.kind.replace("_", " ")

    def due(self, anchor: datetime, calendar: WorkingCalendar) -> datetime | None:
        """The deadline counted from `anchor`, or None where there is no fixed timescale."""
        if self.kind == "working_days":
            assert self.amount is not None
            return calendar.add_working_days(anchor, self.amount)
        if self.kind == "hours":
            assert self.amount is not None
            return anchor + timedelta(hours=self.amount)
        if self.kind == "same_working_day":
            return calendar.same_working_day(anchor)
        if self.kind == "immediately":
            return anchor
        return None

    @property
    def is_short(self) -> bool:
        """Same-day, hour-long and immediate steps are reminded half-way, not a day before."""
        return self.kind != "working_days" or (self.amount or 0) <= 1


Rule = Annotated[DeadlineRule, BeforeValidator(lambda v: v)]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


class Step(_Frozen):
    """One thing someone must do at a stage, by a deadline counted from an anchor."""

    id: Slug
    title: str = Field(min_length=3, max_length=200)
    who: str = "both"
    deadline: Rule
    anchor: Anchor = "previous_step"
    condition: Condition | None = None
    done_when: DoneWhen = "resolution_proposed"
    local_target: Rule | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Step:
        if self.local_target is not None and self.deadline.kind != "no_fixed_timescale":
            raise ValueError("local_target is only for steps with 'no fixed timescale'")
        if self.local_target is not None and self.local_target.kind == "no_fixed_timescale":
            raise ValueError("local_target must be a fixed timescale, e.g. '5 working days'")
        return self


class Stage(_Frozen):
    """A level of the escalation ladder: who acts for each party, and the steps."""

    number: int = Field(ge=1, le=20)
    name: str = Field(min_length=3, max_length=120)
    roles: dict[Party, Slug]
    advisers: list[Slug] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    on_resolution: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Stage:
        missing = {"raising", "receiving"} - set(self.roles)
        if missing:
            raise ValueError(f"roles must name a role for both parties; missing {sorted(missing)}")
        ids = [s.id for s in self.steps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"step ids must be unique within a stage; repeated: {dupes}")
        if all(s.condition is not None for s in self.steps):
            raise ValueError("a stage needs at least one step without a condition")
        return self

    def steps_for(self, flags: Iterable[str] = ()) -> list[Step]:
        """The steps that apply, given the dispute's flags (urgent, exceptional, resolved...)."""
        return [s for s in self.steps if step_applies(s, set(flags))]

    def role_for(self, party: Party, step: Step | None = None) -> str:
        """The directory role acting for `party` at this stage, or the step's own role."""
        if step is not None and step.who not in ("both", "raising", "receiving"):
            return step.who
        return self.roles[party]


def step_applies(step: Step, flags: set[str]) -> bool:
    """Whether a step's condition holds for a dispute with these flags."""
    if step.condition is None:
        return True
    if step.condition == "non_urgent":
        return "urgent" not in flags
    if step.condition == "after_resolution":
        return "resolution_proposed" in flags
    return step.condition in flags


class WorkingHours(_Frozen):
    """The partnership's working day."""

    start: Annotated[time, BeforeValidator(parse_clock_time)] = time(9, 0)
    end: Annotated[time, BeforeValidator(parse_clock_time)] = time(17, 0)

    @model_validator(mode="after")
    def _check(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("working hours must start before they end")
        return self


class OverallTarget(_Frozen):
    """The whole-dispute target, and what a breach of it requires."""

    deadline: Rule
    on_breach: Literal["notify", "reason_for_delay"] = "notify"
    note: str | None = None


class Escalation(_Frozen):
    """What happens when a stage's deadline passes."""

    on_breach: Literal["auto", "ask"] = "ask"
    grace: Rule = DeadlineRule(kind="hours", amount=2)


class ImmediateRisk(_Frozen):
    """The route that overrides every timescale when someone is at immediate risk."""

    route: Slug = "designated_safeguarding_lead"
    also: list[Slug] = Field(default_factory=list)
    guidance: str = Field(min_length=10)


class OutOfHours(_Frozen):
    """Who to call outside working hours."""

    route: Slug = "on_call"
    guidance: str = Field(min_length=10)


class Category(_Frozen):
    """A kind of disagreement the partnership recognises."""

    id: Slug
    label: str = Field(min_length=3, max_length=75)


class OutOfScope(_Frozen):
    """A matter this procedure does not cover, and where it goes instead."""

    id: Slug
    label: str = Field(min_length=3, max_length=75)
    redirect: str = Field(min_length=10)


class AfterResolution(_Frozen):
    """What follows an agreed outcome."""

    check_back: bool = True
    debrief: bool = False
    learning_to: str | None = None


class Policy(_Frozen):
    """A partnership's escalation policy: ordered stages and the rules around them."""

    id: Slug
    name: str
    version: str
    source: str
    nation: Literal["ENG", "WLS", "SCT", "NIR"]
    timezone: str = "Europe/London"
    working_hours: WorkingHours = WorkingHours()
    overall_target: OverallTarget | None = None
    escalation: Escalation = Escalation()
    local_target: Rule = DeadlineRule(kind="working_days", amount=5)
    immediate_risk: ImmediateRisk
    out_of_hours: OutOfHours
    categories: list[Category] = Field(min_length=1)
    out_of_scope: list[OutOfScope] = Field(default_factory=list)
    after_resolution: AfterResolution = AfterResolution()
    stages: list[Stage] = Field(min_length=1)

    # Field validators, not one model validator: a problem is then reported at the field's own
    # line of the file (`stages:`), where a model-level error had no field and said line 1.
    @field_validator("stages")
    @classmethod
    def _numbered_in_order(cls, stages: list[Stage]) -> list[Stage]:
        numbers = [s.number for s in stages]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"stages must be numbered 1, 2, 3... in order; found {numbers}")
        return stages

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        # Checked here, at its line of the file: the calendar would otherwise refuse it only
        # once the partnership was loaded, as an error with no file or line.
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(
                f"'{name}' is not a time zone; use an IANA name such as 'Europe/London'"
            ) from exc
        return name

    @field_validator("categories", "out_of_scope")
    @classmethod
    def _unique_ids(
        cls, items: list[Category] | list[OutOfScope], info: ValidationInfo
    ) -> list[Category] | list[OutOfScope]:
        ids = [c.id for c in items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            kind = "category" if info.field_name == "categories" else "out_of_scope"
            raise ValueError(f"{kind} ids must be unique; repeated: {dupes}")
        return items

    def stage(self, number: int) -> Stage:
        """The stage with this number."""
        return self.stages[number - 1]

    @property
    def last_stage(self) -> int:
        """The number of the final stage."""
        return len(self.stages)

    def category_label(self, category_id: str) -> str:
        """The label of a category id, or the id itself if unknown."""
        return next((c.label for c in self.categories if c.id == category_id), category_id)

    def roles(self) -> set[str]:
        """Every directory role this policy calls on."""
        found = {self.immediate_risk.route, self.out_of_hours.route, *self.immediate_risk.also}
        for stage in self.stages:
            found.update(stage.roles.values())
            found.update(stage.advisers)
            found.update(
                s.who for s in stage.steps if s.who not in ("both", "raising", "receiving")
            )
        return found

    def calendar(self, closures: Iterable[Any] = ()) -> WorkingCalendar:
        """The working-day calendar this policy counts in."""
        return WorkingCalendar(
            self.nation,
            closures=closures,
            start=self.working_hours.start,
            end=self.working_hours.end,
            tz=self.timezone,
        )

    def snapshot(self) -> dict[str, Any]:
        """Plain data for keeping with a dispute, so later edits never move its deadlines."""
        return self.model_dump(mode="json")

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of the policy's content, to tell versions apart."""
        # Worked out once: the policy is frozen, and every save of a dispute names it.
        canonical = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def effective_due(self, step: Step, anchor: datetime, calendar: WorkingCalendar) -> datetime:
        """A step's working deadline: its own, or the local target where it has none."""
        due = step.deadline.due(anchor, calendar)
        if due is None:
            target = step.local_target or self.local_target
            due = target.due(anchor, calendar)
            assert due is not None
        return due


@dataclass(frozen=True)
class PlannedStep:
    """One row of a policy's timeline with real dates."""

    stage: int
    stage_name: str
    step: str
    title: str
    rule: str
    condition: str | None
    due: datetime | None
    local_target_due: datetime | None


def plan_timeline(
    policy: Policy,
    start: datetime,
    calendar: WorkingCalendar,
    done: dict[tuple[int, str], datetime] | None = None,
) -> list[PlannedStep]:
    """The deadline of every step if each step takes its full time, from `start`.

    `done` maps (stage, step id) to when a step was actually completed; later steps then count
    from that moment, as the running dispute does.
    """
    done = done or {}
    rows: list[PlannedStep] = []
    stage_start = start
    for stage in policy.stages:
        prev = stage_start
        branch_prev: dict[str, datetime] = {}
        for step in stage.steps:
            if step.anchor == "disagreement":
                anchor = start
            elif step.anchor == "stage_start":
                anchor = stage_start
            elif step.condition is not None and step.anchor == "previous_step":
                anchor = branch_prev.get(step.condition, prev)
            else:
                anchor = prev
            due = step.deadline.due(anchor, calendar)
            target_due = None if due is not None else policy.effective_due(step, anchor, calendar)
            rows.append(
                PlannedStep(
                    stage=stage.number,
                    stage_name=stage.name,
                    step=step.id,
                    title=step.title,
                    rule=step.deadline.describe(),
                    condition=step.condition,
                    due=due,
                    local_target_due=target_due,
                )
            )
            reached = done.get((stage.number, step.id)) or (due if due is not None else target_due)
            assert reached is not None
            if step.condition is None:
                prev = reached
            else:
                branch_prev[step.condition] = reached
        stage_start = prev
    return rows


def parse_policy(located: Located) -> Policy:
    """Validate parsed YAML as a policy, with located errors."""
    if not isinstance(located.data, dict):
        raise ConfigError(
            [Problem(located.file, 1, "", "a policy file must be a mapping of fields")]
        )
    try:
        return Policy.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(located, exc)) from exc


def load_policy_file(path: Path | str) -> Policy:
    """Load and validate a partnership's own policy file."""
    return parse_policy(load_yaml_file(path))


def load_preset(name: str) -> Policy:
    """Load one of the presets shipped with the bot, by name."""
    if name not in PRESETS:
        raise ConfigError(
            [
                Problem(
                    "policy",
                    None,
                    "",
                    f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}",
                )
            ]
        )
    text = resources.files("bot.policies").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return parse_policy(load_yaml_text(text, f"bot/policies/{name}.yaml"))


def load_policy(ref: str, base_dir: Path | None = None) -> Policy:
    """A preset by name, or a policy file by path (relative to `base_dir`)."""
    if ref in PRESETS:
        return load_preset(ref)
    path = Path(ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.exists():
        raise ConfigError(
            [
                Problem(
                    str(path),
                    None,
                    "",
                    f"no such policy file, and '{ref}' is not a preset ({', '.join(PRESETS)})",
                )
            ]
        )
    return load_policy_file(path)


def policy_from_snapshot(data: dict[str, Any]) -> Policy:
    """Rebuild the exact policy a dispute was opened under."""
    return Policy.model_validate(data)


__all__ = [
    "NATIONS",
    "PRESETS",
    "DeadlineRule",
    "PlannedStep",
    "Policy",
    "Stage",
    "Step",
    "load_policy",
    "load_policy_file",
    "load_preset",
    "plan_timeline",
    "policy_from_snapshot",
]
