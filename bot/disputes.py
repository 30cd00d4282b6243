"""The Dispute aggregate: a disagreement moving through its policy, one command at a time.

Pure domain: standard library and the other domain modules only. Every method takes `now`;
every change appends an event; refusals are events too, so the record shows them.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from bot.directory import Directory, Person
from bot.policy import Policy, Stage, Step, step_applies
from bot.workdays import WorkingCalendar

SUMMARY_LIMIT = 3000
SHORT_LIMIT = 200


class Status(StrEnum):
    """Where a dispute is in its life."""

    OPEN = "open"
    RESOLUTION_PROPOSED = "resolution_proposed"
    RESOLVED = "resolved"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"

    @property
    def label(self) -> str:
        """Plain English."""
        return {
            "open": "open",
            "resolution_proposed": "resolution proposed",
            "resolved": "resolved",
            "withdrawn": "withdrawn",
            "closed": "closed",
        }[self.value]


OPEN_STATUSES = (Status.OPEN, Status.RESOLUTION_PROPOSED)


class Action(StrEnum):
    """Everything a person can do to a dispute; used for authorisation and buttons."""

    ACKNOWLEDGE = "acknowledge"
    ADD_NOTE = "add_note"
    ESCALATE = "escalate"
    PROPOSE_RESOLUTION = "propose_resolution"
    RESPOND_TO_RESOLUTION = "respond_to_resolution"
    RECORD_DELAY_REASON = "record_delay_reason"
    RECORD_LEARNING = "record_learning"
    WITHDRAW = "withdraw"
    REVIEW_ACTIONS = "review_actions"
    SNOOZE = "snooze"
    CLOSE = "close"
    VIEW = "view"


class DisputeError(ValueError):
    """A command that cannot be carried out, with a plain-English reason for the person."""


class NotAllowed(DisputeError):
    """The person may not do this to this dispute."""


@dataclass
class Event:
    """Something that happened to a dispute; past tense, append-only."""

    type: str
    at: datetime
    actor: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepState:
    """A step of the policy as it runs for one dispute."""

    stage: int
    step_id: str
    started_at: datetime
    due_at: datetime
    local_target: bool = False
    status: str = "active"  # active, done, breached, cancelled
    completed_at: datetime | None = None
    completed_by: str | None = None
    breached_at: datetime | None = None
    reminded_at: datetime | None = None
    # Which of the step's timers (reminder, due, breach, escalate) have gone off: each once.
    fired: list[str] = field(default_factory=list)
    # Reminders snoozed by their recipients: person id -> when to remind them again (ISO).
    snoozed: dict[str, str] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        """Still waiting to be done (possibly already late)."""
        return self.status in ("active", "breached")

    @property
    def met(self) -> bool | None:
        """Done on time (True), late (False), or not done yet (None)."""
        if self.completed_at is None:
            return None
        return self.completed_at <= self.due_at


@dataclass
class AgreedAction:
    """An action agreed as part of a resolution, with an owner and a review date."""

    id: int
    description: str
    owner: str
    review_date: date
    status: str = "open"  # open, implemented, reopened
    review_sent: bool = False  # the check-back on the review date has gone out


@dataclass
class Resolution:
    """A proposed or agreed outcome."""

    outcome: str
    actions: list[AgreedAction]
    proposed_by: str
    proposed_at: datetime
    side: str
    status: str = "proposed"  # proposed, confirmed, rejected
    responded_by: str | None = None
    responded_at: datetime | None = None
    reason: str | None = None


@dataclass
class DisputeDetails:
    """What the raiser tells us when opening a dispute."""

    raised_by: str
    raising_agency: str
    receiving_agency: str
    category: str
    case_ref: str
    decision: str
    reasons: str
    outcome_sought: str
    disagreement_date: date
    receiving_person: str | None = None
    immediate_risk: bool = False


@dataclass
class Dispute:
    """A professional disagreement between two agencies, under one policy version."""

    ref: str
    partnership_id: str
    policy: Policy
    details: DisputeDetails
    opened_at: datetime
    status: Status = Status.OPEN
    stage: int = 1
    stage_started_at: datetime | None = None
    flags: set[str] = field(default_factory=set)
    steps: list[StepState] = field(default_factory=list)
    acknowledgements: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    resolution: Resolution | None = None
    resolutions_rejected: int = 0
    delay_reasons: list[dict[str, Any]] = field(default_factory=list)
    learning: list[dict[str, Any]] = field(default_factory=list)
    notes: int = 0
    overall_due: datetime | None = None
    delay_reason_required: bool = False
    closed_at: datetime | None = None
    version: int = 0
    new_events: list[Event] = field(default_factory=list)

    # ---- reading ----------------------------------------------------------------------

    @property
    def current_stage(self) -> Stage:
        """The policy stage the dispute is at."""
        return self.policy.stage(self.stage)

    @property
    def is_open(self) -> bool:
        """Not yet resolved, withdrawn or closed."""
        return self.status in OPEN_STATUSES

    def open_steps(self) -> list[StepState]:
        """Steps still waiting, soonest first."""
        return sorted((s for s in self.steps if s.is_open), key=lambda s: s.due_at)

    @property
    def next_due(self) -> StepState | None:
        """The open step due soonest."""
        steps = self.open_steps()
        return steps[0] if steps else None

    def step_def(self, state: StepState) -> Step:
        """The policy step a running step comes from."""
        stage = self.policy.stage(state.stage)
        return next(s for s in stage.steps if s.id == state.step_id)

    def side_of(self, person: Person) -> str | None:
        """'raising' or 'receiving' by the person's agency, or None."""
        if person.agency == self.details.raising_agency:
            return "raising"
        if person.agency == self.details.receiving_agency:
            return "receiving"
        return None

    def agency_of(self, side: str) -> str:
        """The agency id on a side."""
        return self.details.raising_agency if side == "raising" else self.details.receiving_agency

    def practitioner_of(self, side: str) -> str | None:
        """The named practitioner on a side, if known."""
        return self.details.raised_by if side == "raising" else self.details.receiving_person

    def actors(self, directory: Directory, side: str, stage: int | None = None) -> list[Person]:
        """Who acts for a side at a stage (the current one by default), per the directory."""
        number = stage or self.stage
        stage_def = self.policy.stage(number)
        roles = [stage_def.roles[side]]  # type: ignore[index]
        if number == self.stage:
            for state in self.open_steps():
                step = self.step_def(state)
                if step.who not in ("both", "raising", "receiving"):
                    roles = [step.who]
        agency = self.agency_of(side)
        people: list[Person] = []
        for role in roles:
            practitioner = self.practitioner_of(side)
            holders = directory.role_holders(agency, role, for_person=practitioner)
            if role == "practitioner" and (practitioner is None or not holders):
                # An unknown practitioner: the agency's safeguarding lead is its front door.
                holders = directory.leads(agency)
            people.extend(p for p in holders if p not in people)
        return people

    def parties(self, directory: Directory) -> list[Person]:
        """Everyone acting at the current stage, both sides."""
        out: list[Person] = []
        for side in ("raising", "receiving"):
            out.extend(p for p in self.actors(directory, side) if p not in out)
        return out

    def involved(self, directory: Directory) -> list[Person]:
        """Everyone entitled to see the details: parties so far, their chains, leads, admins."""
        out: list[Person] = []

        def add(people: list[Person]) -> None:
            out.extend(p for p in people if p not in out)

        for side in ("raising", "receiving"):
            for number in range(1, self.stage + 1):
                add(self.actors(directory, side, number))
            practitioner = self.practitioner_of(side)
            if practitioner:
                person = directory.get(practitioner)
                if person:
                    add([person])
                add(directory.chain(practitioner))
            add(directory.leads(self.agency_of(side)))
        add(directory.holding("admin"))
        return out

    def allowed(self, person: Person, action: Action, directory: Directory) -> str | None:
        """None if `person` may do `action` now, else the reason they may not."""
        is_admin = person.has_role("admin")
        side = self.side_of(person)
        # By id: the same person may be a newer copy (a platform id remembered meanwhile).
        involved = _has(self.involved(directory), person)
        if action in (Action.VIEW, Action.ADD_NOTE, Action.RECORD_LEARNING):
            return (
                None
                if involved
                else "only the people involved in this dispute can see or add to it"
            )
        if action == Action.CLOSE:
            return None if is_admin else "only a partnership admin can close a dispute by hand"
        if action == Action.REVIEW_ACTIONS:
            if self.status != Status.RESOLVED or not self.actions_due_review():
                return "there are no agreed actions waiting for review"
            owners = {a.owner for a in self.actions_due_review()}
            return (
                None
                if involved or person.id in owners or is_admin
                else "only the people involved in this dispute can review its agreed actions"
            )
        if not self.is_open:
            return f"{self.ref} is {self.status.label}"
        if side is None:
            if is_admin and action in (Action.ESCALATE, Action.WITHDRAW):
                return None
            return "you are not in either agency of this dispute"
        acting = _has(self.actors(directory, side), person)
        if action == Action.SNOOZE:
            step = self.next_due
            if step is None or not step.fired:
                return "there is no reminder to snooze yet"
            return None if acting else "only the people a reminder went to can snooze it"
        managing = _has(self._backers(directory, side), person)
        if action == Action.ACKNOWLEDGE:
            if person.id == self.details.raised_by:
                return "you raised this dispute, so there is nothing for you to acknowledge"
            return None if acting else self._not_your_stage(side)
        if action in (Action.ESCALATE, Action.PROPOSE_RESOLUTION):
            return None if acting or managing or is_admin else self._not_your_stage(side)
        if action == Action.RESPOND_TO_RESOLUTION:
            if self.resolution is None or self.resolution.status != "proposed":
                return "there is no proposed resolution to respond to"
            if side == self.resolution.side:
                return "the other agency must confirm or reject this resolution, not the one that proposed it"
            return None if acting or managing else self._not_your_stage(side)
        if action == Action.RECORD_DELAY_REASON:
            if side != "raising":
                return "the escalating agency records the reasons for delay"
            return (
                None
                if acting or managing or person.id == self.details.raised_by
                else self._not_your_stage(side)
            )
        if action == Action.WITHDRAW:
            if side != "raising":
                return "only the agency that raised a dispute can withdraw it"
            return (
                None
                if acting or managing or person.id == self.details.raised_by
                else self._not_your_stage(side)
            )
        return "unknown action"

    def _backers(self, directory: Directory, side: str) -> list[Person]:
        # Line managers up the chain and the agency's safeguarding leads may step in.
        out: list[Person] = []
        for actor in self.actors(directory, side):
            out.extend(directory.chain(actor.id))
        practitioner = self.practitioner_of(side)
        if practitioner:
            out.extend(directory.chain(practitioner))
        out.extend(directory.leads(self.agency_of(side)))
        return out

    def _not_your_stage(self, side: str) -> str:
        return (
            f"at stage {self.stage} ({self.current_stage.name}) this is for the "
            f"{side} agency's {self.current_stage.roles[side].replace('_', ' ')}"  # type: ignore[index]
        )

    def require(self, person: Person, action: Action, directory: Directory, now: datetime) -> None:
        """Raise NotAllowed, recording the refusal, if `person` may not do `action`."""
        reason = self.allowed(person, action, directory)
        if reason is not None:
            self._record("ActionRefused", now, person.id, action=action.value, reason=reason)
            raise NotAllowed(reason)

    # ---- changing -----------------------------------------------------------------------

    def record(self, type_: str, at: datetime, actor: str | None, **data: Any) -> Event:
        """Append an event to the log: for timers, which act on the dispute from outside."""
        return self._record(type_, at, actor, **data)

    def _record(self, type_: str, at: datetime, actor: str | None, **data: Any) -> Event:
        event = Event(type_, at, actor, data)
        self.new_events.append(event)
        return event

    def start(self, calendar: WorkingCalendar, now: datetime) -> None:
        """Open the dispute at stage 1 and start its clock."""
        self._record(
            "DisputeOpened",
            now,
            self.details.raised_by,
            policy=self.policy.id,
            policy_version=self.policy.version,
            policy_fingerprint=self.policy.fingerprint,
            **_details_data(self.details),
        )
        if self.details.immediate_risk:
            self.flags.add("urgent")
            self._record("ImmediateRiskFlagged", now, self.details.raised_by)
        target = self.policy.overall_target
        if target is not None:
            self.overall_due = target.deadline.due(self._disagreement_anchor(calendar), calendar)
        self._enter_stage(1, calendar, now, by=self.details.raised_by)

    def _disagreement_anchor(self, calendar: WorkingCalendar) -> datetime:
        # The disagreement is a date: counting from its opening means its own day never counts.
        return calendar.opening_of(self.details.disagreement_date)

    def _enter_stage(
        self, number: int, calendar: WorkingCalendar, now: datetime, *, by: str | None = None
    ) -> None:
        for state in self.steps:
            if state.is_open:
                state.status = "cancelled"
        self.stage = number
        self.stage_started_at = now
        self.acknowledgements[str(number)] = {}
        self._advance(calendar, now, by=by)

    def _advance(self, calendar: WorkingCalendar, now: datetime, *, by: str | None = None) -> None:
        """Start the next applicable steps of the current stage; complete 'raised' steps.

        `by` is who did what starts them: a 'raised' step is done by that act (the raiser
        opening the dispute, the person escalating it; None when the bot escalated).
        """
        stage = self.current_stage
        assert self.stage_started_at is not None
        # Only this visit to the stage counts: a reopened dispute runs the stage's steps afresh.
        current = [
            s for s in self.steps if s.stage == self.stage and s.started_at >= self.stage_started_at
        ]
        # A written confirmation cancelled by a rejected proposal is not 'started': the next
        # proposal needs its own, or the dispute would wait with no deadline at all.
        started = {
            s.step_id
            for s in current
            if not (s.status == "cancelled" and self.step_def(s).condition == "after_resolution")
        }
        open_ids = {s.step_id for s in current if s.is_open}
        last_done: dict[str | None, datetime] = {}
        for state in current:
            if state.completed_at is not None:
                cond = self.step_def(state).condition
                last_done[cond] = max(last_done.get(cond, state.completed_at), state.completed_at)
        assert self.stage_started_at is not None
        for branch in {s.condition for s in stage.steps}:
            branch_steps = [s for s in stage.steps if s.condition == branch]
            if branch is not None and not step_applies(branch_steps[0], self.flags):
                continue
            for step in branch_steps:
                if step.id in open_ids:
                    break  # this branch is waiting on an open step
                if step.id in started:
                    continue
                previous = last_done.get(branch) or last_done.get(None)
                if branch == "exceptional" and branch not in last_done:
                    # The route begins when it is taken (now, in `escalate`), not when the
                    # stage whose steps failed began; plan_timeline counts it the same way.
                    previous = now
                anchor = self._anchor(step, calendar, previous)
                due = self.policy.effective_due(step, anchor, calendar)
                state = StepState(
                    stage=self.stage,
                    step_id=step.id,
                    started_at=now,
                    due_at=due,
                    local_target=step.deadline.kind == "no_fixed_timescale",
                )
                self.steps.append(state)
                if step.done_when == "raised":
                    self._complete(state, now, by)
                    last_done[branch] = now
                    continue
                break

    def _anchor(self, step: Step, calendar: WorkingCalendar, previous: datetime | None) -> datetime:
        assert self.stage_started_at is not None
        if step.anchor == "disagreement":
            return self._disagreement_anchor(calendar)
        if step.anchor == "resolution" and self.resolution is not None:
            return self.resolution.proposed_at
        if step.anchor == "stage_start":
            return self.stage_started_at
        return previous or self.stage_started_at

    def _complete(self, state: StepState, now: datetime, by: str | None) -> None:
        state.status = "done"
        state.completed_at = now
        state.completed_by = by
        self._record(
            "StepCompleted",
            now,
            by,
            stage=state.stage,
            step=state.step_id,
            due=state.due_at.isoformat(),
            on_time=bool(state.met),
        )

    def _complete_where(
        self, done_when: str, now: datetime, by: str | None, side: str | None = None
    ) -> None:
        for state in self.open_steps():
            if state.stage != self.stage:
                continue
            step = self.step_def(state)
            if step.done_when != done_when:
                continue
            if done_when == "acknowledged" and not self._acknowledged_for(step.who):
                continue
            self._complete(state, now, by)

    def _acknowledged_for(self, who: str) -> bool:
        acks = self.acknowledgements.get(str(self.stage), {})
        if who == "both":
            return {"raising", "receiving"} <= set(acks)
        if who in ("raising", "receiving"):
            return who in acks
        return bool(acks)

    def acknowledge(
        self, person: Person, directory: Directory, calendar: WorkingCalendar, now: datetime
    ) -> bool:
        """Record that a party has seen the dispute at this stage; False if already done."""
        self.require(person, Action.ACKNOWLEDGE, directory, now)
        side = self.side_of(person)
        assert side is not None
        acks = self.acknowledgements.setdefault(str(self.stage), {})
        if side in acks:
            return False
        acks[side] = [person.id, now.isoformat()]
        self._record("Acknowledged", now, person.id, stage=self.stage, side=side)
        self._complete_where("acknowledged", now, person.id, side)
        self._advance(calendar, now, by=person.id)
        return True

    def acknowledged_by(self, side: str) -> tuple[str, datetime] | None:
        """Who acknowledged for a side at the current stage, and when."""
        entry = self.acknowledgements.get(str(self.stage), {}).get(side)
        if not entry:
            return None
        return entry[0], datetime.fromisoformat(entry[1])

    def add_note(
        self,
        person: Person,
        directory: Directory,
        calendar: WorkingCalendar,
        now: datetime,
        *,
        text: str,
        with_whom: str | None = None,
        held_at: datetime | None = None,
    ) -> None:
        """Add a contemporaneous record of a discussion: who, with whom, when, what."""
        self.require(person, Action.ADD_NOTE, directory, now)
        text = _clean(text, "note", SUMMARY_LIMIT)
        if held_at is not None and held_at > now:
            raise DisputeError("a discussion cannot be recorded as held in the future")
        self.notes += 1
        self._record(
            "NoteAdded",
            now,
            person.id,
            text=text,
            with_whom=with_whom,
            held_at=(held_at or now).isoformat(),
            stage=self.stage,
        )
        if _has(self.parties(directory), person):
            self._complete_where("discussed", now, person.id)
            self._advance(calendar, now, by=person.id)

    def escalate(
        self,
        person: Person | None,
        directory: Directory,
        calendar: WorkingCalendar,
        now: datetime,
        *,
        reason: str,
        exceptional: bool = False,
        urgent: bool | None = None,
    ) -> None:
        """Move to the next stage (or take the exceptional route at the last one)."""
        if person is not None:
            self.require(person, Action.ESCALATE, directory, now)
        elif not self.is_open:
            raise DisputeError(f"{self.ref} is {self.status.label}")
        reason = _clean(reason, "reason", SUMMARY_LIMIT)
        actor = person.id if person else None
        # Every refusal comes before any change: a refused command leaves the dispute as it was.
        at_last = self.stage >= self.policy.last_stage
        if at_last:
            has_route = any(s.condition == "exceptional" for s in self.current_stage.steps)
            if not has_route:
                raise DisputeError(
                    f"{self.ref} is already at the final stage ({self.current_stage.name})"
                )
            if "exceptional" in self.flags:
                raise DisputeError(f"{self.ref} is already on the exceptional route")
        if self.status == Status.RESOLUTION_PROPOSED and self.resolution is not None:
            self.resolution.status = "withdrawn"
            self.status = Status.OPEN
            self.flags.discard("resolution_proposed")
        if urgent is not None:
            (self.flags.add if urgent else self.flags.discard)("urgent")
        if at_last:
            self.flags.add("exceptional")
            self._record("ExceptionalRouteTaken", now, actor, reason=reason, stage=self.stage)
            # The stage's own steps failed, which is why the exceptional route is taken: left
            # open they would breach and try to escalate a dispute that can go no further.
            for state in self.steps:
                if state.is_open:
                    state.status = "cancelled"
            self._advance(calendar, now, by=actor)
            return
        previous = self.stage
        # Recorded first, so the record reads in order: the escalation, then the new stage's
        # steps (a 'raised' step of the new stage is completed by the escalation itself).
        self._record(
            "StageEscalated",
            now,
            actor,
            from_stage=previous,
            to_stage=previous + 1,
            reason=reason,
            automatic=person is None,
        )
        self._enter_stage(previous + 1, calendar, now, by=actor)

    def propose_resolution(
        self,
        person: Person,
        directory: Directory,
        calendar: WorkingCalendar,
        now: datetime,
        *,
        outcome: str,
        actions: list[tuple[str, str, date]],
    ) -> None:
        """Propose an agreed outcome with actions (description, owner id, review date)."""
        self.require(person, Action.PROPOSE_RESOLUTION, directory, now)
        if self.status == Status.RESOLUTION_PROPOSED:
            raise DisputeError("a resolution is already waiting for the other agency's answer")
        outcome = _clean(outcome, "outcome", SUMMARY_LIMIT)
        agreed: list[AgreedAction] = []
        for i, (text, owner, review) in enumerate(actions, start=1):
            text = _clean(text, f"action {i}", SHORT_LIMIT * 2)
            if directory.get(owner) is None:
                raise DisputeError(f"action {i}: nobody in the directory has the id '{owner}'")
            if review < calendar.local(now).date():
                raise DisputeError(f"action {i}: the review date cannot be in the past")
            agreed.append(AgreedAction(id=i, description=text, owner=owner, review_date=review))
        side = self.side_of(person) or "raising"
        self.resolution = Resolution(outcome, agreed, person.id, now, side)
        self.status = Status.RESOLUTION_PROPOSED
        self.flags.add("resolution_proposed")
        self._record(
            "ResolutionProposed",
            now,
            person.id,
            outcome=outcome,
            actions=[_action_data(a) for a in agreed],
            stage=self.stage,
            side=side,
        )
        self._complete_where("resolution_proposed", now, person.id)
        self._advance(calendar, now, by=person.id)

    def respond_to_resolution(
        self,
        person: Person,
        directory: Directory,
        calendar: WorkingCalendar,
        now: datetime,
        *,
        confirm: bool,
        reason: str | None = None,
    ) -> None:
        """Confirm (the dispute is resolved) or reject (it carries on) the proposed resolution."""
        self.require(person, Action.RESPOND_TO_RESOLUTION, directory, now)
        assert self.resolution is not None
        if not confirm:
            # Checked before any change, so a refused rejection leaves the proposal untouched.
            if not reason or not reason.strip():
                raise DisputeError(
                    "say why the resolution is rejected, so the other agency can respond"
                )
            reason = _clean(reason, "reason", SUMMARY_LIMIT)
        self.resolution.responded_by = person.id
        self.resolution.responded_at = now
        if confirm:
            self.resolution.status = "confirmed"
            self.status = Status.RESOLVED
            self.closed_at = now
            self._record("ResolutionConfirmed", now, person.id, stage=self.stage)
            self._complete_where("resolved", now, person.id)
            for state in self.steps:
                if state.is_open:
                    state.status = "cancelled"
            return
        self.resolution.reason = reason
        self.resolution.status = "rejected"
        self.resolutions_rejected += 1
        self.status = Status.OPEN
        self.flags.discard("resolution_proposed")
        self._record(
            "ResolutionRejected", now, person.id, reason=self.resolution.reason, stage=self.stage
        )
        for state in self.steps:
            if state.stage != self.stage:
                continue
            step = self.step_def(state)
            if step.condition == "after_resolution" and state.is_open:
                state.status = "cancelled"
            elif step.done_when == "resolution_proposed" and state.status == "done":
                # The proposal did not settle it: the step is open again on its original clock.
                state.status = "active"
                state.completed_at = None
                state.completed_by = None

    def record_delay_reason(
        self,
        person: Person,
        directory: Directory,
        now: datetime,
        *,
        reason: str,
        safety_confirmed: bool,
    ) -> None:
        """Record why the dispute is past its overall target, and that the child stays safe."""
        self.require(person, Action.RECORD_DELAY_REASON, directory, now)
        reason = _clean(reason, "reason for delay", SUMMARY_LIMIT)
        self.delay_reasons.append(
            {
                "by": person.id,
                "at": now.isoformat(),
                "reason": reason,
                "safety_confirmed": safety_confirmed,
            }
        )
        self.delay_reason_required = False
        self._record(
            "DelayReasonRecorded", now, person.id, reason=reason, safety_confirmed=safety_confirmed
        )

    def record_learning(
        self, person: Person, directory: Directory, now: datetime, *, text: str
    ) -> None:
        """Record a learning point for the board."""
        self.require(person, Action.RECORD_LEARNING, directory, now)
        text = _clean(text, "learning point", SUMMARY_LIMIT)
        self.learning.append({"by": person.id, "at": now.isoformat(), "text": text})
        self._record("LearningRecorded", now, person.id, text=text)

    def withdraw(self, person: Person, directory: Directory, now: datetime, *, reason: str) -> None:
        """The raising agency withdraws the dispute."""
        self.require(person, Action.WITHDRAW, directory, now)
        reason = _clean(reason, "reason", SUMMARY_LIMIT)
        self.status = Status.WITHDRAWN
        self.closed_at = now
        for state in self.steps:
            if state.is_open:
                state.status = "cancelled"
        self._record("DisputeWithdrawn", now, person.id, reason=reason)

    def snooze(
        self, person: Person, directory: Directory, calendar: WorkingCalendar, now: datetime
    ) -> datetime:
        """Remind this person again at the next working morning, if that is before the deadline."""
        self.require(person, Action.SNOOZE, directory, now)
        state = self.next_due
        if state is None:
            raise DisputeError(f"{self.ref} has no deadline to be reminded of")
        again = calendar.opening_of(calendar.next_working_day(calendar.local(now).date()))
        if again >= state.due_at:
            raise DisputeError(
                "this step is due before the next working morning, so the reminder cannot be put off"
            )
        state.snoozed[person.id] = again.isoformat()
        self._record(
            "ReminderSnoozed",
            now,
            person.id,
            stage=state.stage,
            step=state.step_id,
            until=again.isoformat(),
        )
        return again

    def actions_due_review(self) -> list[AgreedAction]:
        """Agreed actions of a confirmed resolution whose check-back has gone out, still open."""
        if self.resolution is None or self.resolution.status != "confirmed":
            return []
        return [a for a in self.resolution.actions if a.status == "open" and a.review_sent]

    def review_actions(
        self,
        person: Person,
        directory: Directory,
        calendar: WorkingCalendar,
        now: datetime,
        *,
        implemented: bool,
        reason: str | None = None,
    ) -> None:
        """At the check-back: the agreed actions were implemented, or the dispute reopens."""
        self.require(person, Action.REVIEW_ACTIONS, directory, now)
        due = self.actions_due_review()
        if implemented:
            for item in due:
                item.status = "implemented"
            self._record("ActionsImplemented", now, person.id, actions=[a.id for a in due])
            return
        reason = _clean(reason or "", "reason for reopening", SUMMARY_LIMIT)
        for item in due:
            item.status = "reopened"
        assert self.resolution is not None
        self.resolution.status = "reopened"
        self.status = Status.OPEN
        self.closed_at = None
        self._record("DisputeReopened", now, person.id, reason=reason, actions=[a.id for a in due])
        # The stage starts again on a fresh clock: the agreed way forward did not hold.
        self._enter_stage(self.stage, calendar, now)

    def close(self, person: Person, directory: Directory, now: datetime, *, reason: str) -> None:
        """A partnership admin closes the dispute."""
        self.require(person, Action.CLOSE, directory, now)
        if self.status == Status.CLOSED:
            raise DisputeError(f"{self.ref} is already closed")
        reason = _clean(reason, "reason", SUMMARY_LIMIT)
        self.status = Status.CLOSED
        self.closed_at = self.closed_at or now
        for state in self.steps:
            if state.is_open:
                state.status = "cancelled"
        self._record("DisputeClosed", now, person.id, reason=reason)


def _has(people: list[Person], person: Person) -> bool:
    """Whether `person` is among `people`, by directory id."""
    return any(p.id == person.id for p in people)


def _clean(text: str, what: str, limit: int) -> str:
    text = (text or "").strip()
    if not text:
        raise DisputeError(f"the {what} is empty")
    if len(text) > limit:
        raise DisputeError(
            f"the {what} is {len(text):,} characters; please keep it under {limit:,}"
        )
    return text


def _action_data(action: AgreedAction) -> dict[str, Any]:
    data = asdict(action)
    data["review_date"] = action.review_date.isoformat()
    return data


def _details_data(details: DisputeDetails) -> dict[str, Any]:
    data = asdict(details)
    data["disagreement_date"] = details.disagreement_date.isoformat()
    return data


CASE_REF_LIMIT = 40


def open_dispute(
    *,
    ref: str,
    partnership_id: str,
    policy: Policy,
    details: DisputeDetails,
    directory: Directory,
    calendar: WorkingCalendar,
    now: datetime,
) -> Dispute:
    """Validate what the raiser gave and open a dispute at stage 1."""
    raiser = directory.get(details.raised_by)
    if raiser is None:
        raise DisputeError(
            "you are not in the partnership directory yet, so a dispute cannot be logged for you"
        )
    for label, agency in (
        ("your agency", details.raising_agency),
        ("the other agency", details.receiving_agency),
    ):
        if agency not in directory.agencies:
            raise DisputeError(
                f"{label} ('{agency}') is not an agency in the partnership directory"
            )
    if raiser.agency != details.raising_agency:
        # Sides are decided by agency: a raiser outside the raising agency could not act on,
        # or even withdraw, their own dispute.
        raise DisputeError(
            f"{raiser.name} is not in {directory.agency_name(details.raising_agency)}; "
            "a dispute is raised by someone in the raising agency"
        )
    if details.raising_agency == details.receiving_agency:
        raise DisputeError(
            "both sides are in the same agency; a disagreement inside one agency goes through "
            "that agency's own processes, not this protocol"
        )
    if details.receiving_person is not None:
        other = directory.get(details.receiving_person)
        if other is None:
            raise DisputeError(f"nobody in the directory has the id '{details.receiving_person}'")
        if other.agency != details.receiving_agency:
            raise DisputeError(
                f"{other.name} is not in {directory.agency_name(details.receiving_agency)}"
            )
    if details.category not in {c.id for c in policy.categories}:
        choices = ", ".join(c.id for c in policy.categories)
        raise DisputeError(
            f"'{details.category}' is not a category of this policy; choose one of {choices}"
        )
    details.case_ref = _clean(details.case_ref, "case reference", CASE_REF_LIMIT)
    details.decision = _clean(details.decision, "decision you disagree with", SUMMARY_LIMIT)
    details.reasons = _clean(details.reasons, "reasons", SUMMARY_LIMIT)
    details.outcome_sought = _clean(details.outcome_sought, "outcome sought", SUMMARY_LIMIT)
    if details.disagreement_date > calendar.local(now).date():
        raise DisputeError("the date of the disagreement cannot be in the future")
    dispute = Dispute(
        ref=ref, partnership_id=partnership_id, policy=policy, details=details, opened_at=now
    )
    dispute.start(calendar, now)
    return dispute


def to_data(dispute: Dispute) -> dict[str, Any]:
    """The dispute's state as JSON-ready data (the policy is kept separately, as a snapshot)."""
    data: dict[str, Any] = {
        "ref": dispute.ref,
        "partnership_id": dispute.partnership_id,
        "details": _details_data(dispute.details),
        "opened_at": dispute.opened_at.isoformat(),
        "status": dispute.status.value,
        "stage": dispute.stage,
        "stage_started_at": _iso(dispute.stage_started_at),
        "flags": sorted(dispute.flags),
        "steps": [
            {
                **asdict(s),
                "started_at": s.started_at.isoformat(),
                "due_at": s.due_at.isoformat(),
                "completed_at": _iso(s.completed_at),
                "breached_at": _iso(s.breached_at),
                "reminded_at": _iso(s.reminded_at),
            }
            for s in dispute.steps
        ],
        # Copies, not the dispute's own containers: data and dispute must not change together.
        "acknowledgements": deepcopy(dispute.acknowledgements),
        "resolution": None,
        "resolutions_rejected": dispute.resolutions_rejected,
        "delay_reasons": deepcopy(dispute.delay_reasons),
        "learning": deepcopy(dispute.learning),
        "notes": dispute.notes,
        "overall_due": _iso(dispute.overall_due),
        "delay_reason_required": dispute.delay_reason_required,
        "closed_at": _iso(dispute.closed_at),
    }
    if dispute.resolution is not None:
        r = dispute.resolution
        data["resolution"] = {
            **asdict(r),
            "actions": [_action_data(a) for a in r.actions],
            "proposed_at": r.proposed_at.isoformat(),
            "responded_at": _iso(r.responded_at),
        }
    return data


def from_data(data: dict[str, Any], policy: Policy, version: int = 0) -> Dispute:
    """Rebuild a dispute from `to_data` output and the policy it was opened under."""
    details = dict(data["details"])
    details["disagreement_date"] = date.fromisoformat(details["disagreement_date"])
    resolution = None
    if data.get("resolution"):
        r = dict(data["resolution"])
        r["actions"] = [
            AgreedAction(**{**a, "review_date": date.fromisoformat(a["review_date"])})
            for a in r["actions"]
        ]
        r["proposed_at"] = datetime.fromisoformat(r["proposed_at"])
        r["responded_at"] = _dt(r.get("responded_at"))
        resolution = Resolution(**r)
    steps = [
        StepState(
            **{
                **s,
                "started_at": datetime.fromisoformat(s["started_at"]),
                "due_at": datetime.fromisoformat(s["due_at"]),
                "completed_at": _dt(s.get("completed_at")),
                "breached_at": _dt(s.get("breached_at")),
                "reminded_at": _dt(s.get("reminded_at")),
                "fired": list(s.get("fired", [])),
                "snoozed": dict(s.get("snoozed", {})),
            }
        )
        for s in data["steps"]
    ]
    return Dispute(
        ref=data["ref"],
        partnership_id=data["partnership_id"],
        policy=policy,
        details=DisputeDetails(**details),
        opened_at=datetime.fromisoformat(data["opened_at"]),
        status=Status(data["status"]),
        stage=data["stage"],
        stage_started_at=_dt(data.get("stage_started_at")),
        flags=set(data.get("flags", [])),
        steps=steps,
        # Copies, so two disputes rebuilt from the same data never share state.
        acknowledgements=deepcopy(data.get("acknowledgements", {})),
        resolution=resolution,
        resolutions_rejected=data.get("resolutions_rejected", 0),
        delay_reasons=deepcopy(data.get("delay_reasons", [])),
        learning=deepcopy(data.get("learning", [])),
        notes=data.get("notes", 0),
        overall_due=_dt(data.get("overall_due")),
        delay_reason_required=data.get("delay_reason_required", False),
        closed_at=_dt(data.get("closed_at")),
        version=version,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
