"""Who is told what when something happens to a dispute: events in, neutral messages out.

Pure domain. Channel messages carry only the reference, agencies, stage, deadline and state;
details go only to the parties, in direct messages.
"""

from __future__ import annotations

from datetime import datetime

from bot.directory import Directory, Person, role_label
from bot.disputes import Dispute, Event
from bot.messages import ActionId, Button, Message, Recipient
from bot.policy import plan_timeline
from bot.workdays import WorkingCalendar, format_when

PARTY_BUTTONS = (
    ActionId.ACKNOWLEDGE,
    ActionId.ADD_NOTE,
    ActionId.PROPOSE_RESOLUTION,
    ActionId.ESCALATE,
    ActionId.VIEW_DETAILS,
)


class Notices:
    """Builds the messages for a dispute's new events."""

    def __init__(self, directory: Directory, calendar: WorkingCalendar) -> None:
        self.directory = directory
        self.calendar = calendar

    def when(self, at: datetime | None, now: datetime) -> str:
        """'Wed 2 Dec, 17:00' in the partnership's time zone."""
        if at is None:
            return "no fixed deadline"
        return format_when(at, self.calendar.tz, now=now)

    def name(self, person_id: str | None) -> str:
        """A person's name and agency, or 'someone'."""
        person = self.directory.get(person_id)
        if person is None:
            return "the bot" if person_id is None else person_id
        return f"{person.name} ({self.directory.agency_name(person.agency)})"

    def agencies(self, dispute: Dispute) -> str:
        """'Raising agency and receiving agency'."""
        d = dispute.details
        return f"{self.directory.agency_name(d.raising_agency)} and {self.directory.agency_name(d.receiving_agency)}"

    def next_deadline(self, dispute: Dispute, now: datetime) -> str:
        """The soonest open deadline, in words."""
        step = dispute.next_due
        if step is None or not dispute.is_open:
            return "none"
        label = " (local target)" if step.local_target else ""
        late = " - overdue" if step.due_at <= now else ""
        return f"{self.when(step.due_at, now)}{label}{late}"

    def thread_root(self, dispute: Dispute, now: datetime) -> Message:
        """The channel post that is the dispute's thread; only non-identifying facts."""
        stage = dispute.current_stage
        return Message(
            recipient=Recipient.channel(),
            text=f"Professional disagreement {dispute.ref}",
            facts=[
                ("Agencies", self.agencies(dispute)),
                ("Stage", f"{stage.number} of {dispute.policy.last_stage}: {stage.name}"),
                ("Next deadline", self.next_deadline(dispute, now)),
                (
                    "State",
                    dispute.status.label + (" - urgent" if "urgent" in dispute.flags else ""),
                ),
            ],
            ref=dispute.ref,
            kind="thread_root",
        )

    def in_thread(self, dispute: Dispute, text: str) -> Message:
        """A short update in the dispute's channel thread."""
        return Message(Recipient.channel(), text, ref=dispute.ref, kind="thread")

    def details_facts(self, dispute: Dispute) -> list[tuple[str, str]]:
        """The dispute's details, for the parties only."""
        d = dispute.details
        return [
            ("Case reference", d.case_ref),
            ("Category", dispute.policy.category_label(d.category)),
            ("Decision disputed", d.decision),
            ("Reasons", d.reasons),
            ("Outcome sought", d.outcome_sought),
            ("Date of disagreement", d.disagreement_date.strftime("%a %-d %b %Y")),
        ]

    def direct(
        self,
        people: list[Person],
        dispute: Dispute,
        text: str,
        *,
        facts: list[tuple[str, str]] | None = None,
        buttons: tuple[ActionId, ...] = (),
    ) -> list[Message]:
        """The same direct message to each person."""
        return [
            Message(
                Recipient.person(p.id),
                text,
                facts=list(facts or []),
                buttons=[
                    Button(a, dispute.ref, "primary" if a == ActionId.ACKNOWLEDGE else None)
                    for a in buttons
                ],
                ref=dispute.ref,
                kind="direct",
            )
            for p in people
        ]

    def deadlines_text(self, dispute: Dispute, now: datetime) -> list[tuple[str, str]]:
        """The policy's deadlines from now, as facts for the raiser."""
        done = {
            (s.stage, s.step_id): s.completed_at
            for s in dispute.steps
            if s.completed_at is not None
        }
        rows = plan_timeline(dispute.policy, dispute.opened_at, self.calendar, done)
        out = []
        for row in rows:
            if row.condition is not None:
                continue
            finished = done.get((row.stage, row.step))
            if finished is not None:
                due = f"done {self.when(finished, now)}"
            elif row.due is not None:
                due = self.when(row.due, now)
            else:
                due = f"{self.when(row.local_target_due, now)} (local target)"
            out.append((f"Stage {row.stage}: {row.title}", due))
        return out[:12]

    def for_events(self, dispute: Dispute, events: list[Event], now: datetime) -> list[Message]:
        """Every message the new events call for, root post first."""
        out: list[Message] = []
        root_changed = False
        for event in events:
            handler = getattr(self, f"_on_{event.type}", None)
            if handler is not None:
                out.extend(handler(dispute, event, now))
            if event.type in ROOT_EVENTS:
                root_changed = True
        if root_changed:
            out.insert(0, self.thread_root(dispute, now))
        return out

    # ---- one handler per event type ---------------------------------------------------

    def _on_DisputeOpened(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        d = dispute.details
        raiser = self.name(d.raised_by)
        step = dispute.next_due
        by = f" by {self.when(step.due_at, now)}" if step else ""
        receivers = dispute.actors(self.directory, "receiving")
        out = self.direct(
            receivers,
            dispute,
            f"{raiser} has raised a professional disagreement ({dispute.ref}) with your agency. "
            f"Please acknowledge it and talk to them{by}.",
            facts=self.details_facts(dispute),
            buttons=PARTY_BUTTONS,
        )
        raiser_person = self.directory.get(d.raised_by)
        if raiser_person is not None:
            told = _and_list([p.name for p in receivers]) or "The other agency's safeguarding lead"
            verb = "have" if len(receivers) > 1 else "has"
            out += self.direct(
                [raiser_person],
                dispute,
                f"Logged as {dispute.ref}. {told} {verb} been told and asked to acknowledge. "
                "These are the policy's deadlines if each step takes its full time "
                "(a stage that ends sooner brings the next one forward):",
                facts=self.deadlines_text(dispute, now),
                buttons=(ActionId.ADD_NOTE, ActionId.ESCALATE, ActionId.VIEW_DETAILS),
            )
        out.append(
            self.in_thread(
                dispute, f"{dispute.ref} opened at stage 1 ({dispute.current_stage.name})."
            )
        )
        return out

    def _on_ImmediateRiskFlagged(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        d = dispute.details
        route = dispute.policy.immediate_risk
        people: list[Person] = []
        for role in (route.route, *route.also):
            people += [
                p
                for p in self.directory.role_holders(d.raising_agency, role, for_person=d.raised_by)
                if p not in people
            ]
        if not self.calendar.in_working_hours(now):
            people += [
                p
                for p in self.directory.role_holders(
                    d.raising_agency, dispute.policy.out_of_hours.route
                )
                if p not in people
            ]
        people = [p for p in people if p.id != d.raised_by]
        return self.direct(
            people,
            dispute,
            f"URGENT: {self.name(d.raised_by)} reports that someone is at immediate risk of significant "
            f"harm in {dispute.ref} (case {d.case_ref}). Please act now; do not wait for the "
            "escalation timescales.",
            facts=self.details_facts(dispute),
            buttons=(ActionId.ACKNOWLEDGE, ActionId.VIEW_DETAILS),
        )

    def _on_Acknowledged(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        side = event.data["side"]
        other = "receiving" if side == "raising" else "raising"
        people = self._side_people(dispute, other)
        return [
            *self.direct(
                people,
                dispute,
                f"{self.name(event.actor)} acknowledged {dispute.ref} at {self.when(event.at, now)}.",
            ),
            self.in_thread(
                dispute,
                f"Acknowledged by the {self._agency(dispute, side)} at {self.when(event.at, now)}.",
            ),
        ]

    def _on_NoteAdded(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        people = [p for p in dispute.parties(self.directory) if p.id != event.actor]
        return self.direct(
            people,
            dispute,
            f"{self.name(event.actor)} added a note to {dispute.ref}:",
            facts=[("Note", event.data["text"])]
            + ([("With", event.data["with_whom"])] if event.data.get("with_whom") else []),
            buttons=(ActionId.ADD_NOTE, ActionId.VIEW_DETAILS),
        )

    def _on_StageEscalated(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        stage = dispute.current_stage
        who = (
            "automatically, because a deadline passed"
            if event.data.get("automatic")
            else f"by {self.name(event.actor)}"
        )
        step = dispute.next_due
        by = f" by {self.when(step.due_at, now)}" if step else ""
        out: list[Message] = []
        for side in ("raising", "receiving"):
            people = dispute.actors(self.directory, side)
            role = role_label(stage.roles[side])
            out += self.direct(
                people,
                dispute,
                f"{dispute.ref} has been escalated to stage {stage.number} ({stage.name}) {who}. "
                f"As the {self._agency(dispute, side)}'s {role}, please acknowledge it and work with "
                f"your counterpart to resolve it{by}.",
                facts=[
                    ("Reason for escalation", event.data["reason"]),
                    *self.details_facts(dispute),
                ],
                buttons=PARTY_BUTTONS,
            )
        advisers = []
        for role in stage.advisers:
            for side in ("raising", "receiving"):
                advisers += [
                    p
                    for p in self.directory.role_holders(dispute.agency_of(side), role)
                    if p not in advisers
                ]
        notified = {m.recipient.id for m in out}
        out += self.direct(
            [p for p in advisers if p.id not in notified],
            dispute,
            f"{dispute.ref} has reached stage {stage.number} ({stage.name}); your advice may be sought.",
            buttons=(ActionId.VIEW_DETAILS,),
        )
        raiser = self.directory.get(dispute.details.raised_by)
        if raiser is not None and raiser.id not in notified:
            out += self.direct(
                [raiser],
                dispute,
                f"{dispute.ref} has been escalated to stage {stage.number} ({stage.name}) {who}.",
            )
        out.append(self.in_thread(dispute, f"Escalated to stage {stage.number} ({stage.name})."))
        return out

    def _on_ExceptionalRouteTaken(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        people = dispute.parties(self.directory)
        return [
            *self.direct(
                people,
                dispute,
                f"{dispute.ref} has been referred by the exceptional route.",
                facts=[("Reason", event.data["reason"])],
            ),
            self.in_thread(dispute, "Referred by the exceptional route."),
        ]

    def _on_ResolutionProposed(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        other = "receiving" if event.data["side"] == "raising" else "raising"
        facts = [("Proposed outcome", event.data["outcome"])]
        for action in event.data["actions"]:
            owner = self.name(action["owner"])
            facts.append(
                (
                    f"Action {action['id']}",
                    f"{action['description']} - {owner}, review {action['review_date']}",
                )
            )
        step = dispute.next_due
        by = f" by {self.when(step.due_at, now)}" if step else ""
        return [
            *self.direct(
                self._side_people(dispute, other),
                dispute,
                f"{self.name(event.actor)} proposes a resolution to {dispute.ref}. Please confirm or reject it{by}.",
                facts=facts,
                buttons=(
                    ActionId.CONFIRM_RESOLUTION,
                    ActionId.REJECT_RESOLUTION,
                    ActionId.VIEW_DETAILS,
                ),
            ),
            self.in_thread(dispute, "A resolution has been proposed."),
        ]

    def _on_ResolutionConfirmed(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        assert dispute.resolution is not None
        people = list(dispute.parties(self.directory))
        for action in dispute.resolution.actions:
            owner = self.directory.get(action.owner)
            if owner is not None and owner not in people:
                people.append(owner)
        facts = [("Agreed outcome", dispute.resolution.outcome)]
        facts += [
            (
                f"Action {a.id}",
                f"{a.description} - {self.name(a.owner)}, review {a.review_date:%a %-d %b %Y}",
            )
            for a in dispute.resolution.actions
        ]
        return [
            *self.direct(
                people,
                dispute,
                f"{dispute.ref} is resolved: {self.name(event.actor)} confirmed the agreed outcome. "
                "This is the written record of the outcome; place it on the child's or adult's file.",
                facts=facts,
                buttons=(ActionId.RECORD_LEARNING, ActionId.SEND_RECORD, ActionId.VIEW_DETAILS),
            ),
            self.in_thread(dispute, f"Resolved at stage {dispute.stage}."),
        ]

    def _on_ResolutionRejected(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        assert dispute.resolution is not None
        proposer_side = dispute.resolution.side
        return [
            *self.direct(
                self._side_people(dispute, proposer_side),
                dispute,
                f"{self.name(event.actor)} rejected the proposed resolution to {dispute.ref}.",
                facts=[("Reason", event.data["reason"])],
                buttons=(ActionId.ADD_NOTE, ActionId.PROPOSE_RESOLUTION, ActionId.ESCALATE),
            ),
            self.in_thread(dispute, "The proposed resolution was rejected; the dispute continues."),
        ]

    def _on_DisputeWithdrawn(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        people = [p for p in dispute.parties(self.directory) if p.id != event.actor]
        return [
            *self.direct(
                people,
                dispute,
                f"{self.name(event.actor)} withdrew {dispute.ref}.",
                facts=[("Reason", event.data["reason"])],
            ),
            self.in_thread(dispute, "Withdrawn by the raising agency."),
        ]

    def _on_DisputeClosed(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        people = [p for p in dispute.parties(self.directory) if p.id != event.actor]
        return [
            *self.direct(
                people,
                dispute,
                f"{dispute.ref} was closed by {self.name(event.actor)}.",
                facts=[("Reason", event.data["reason"])],
            ),
            self.in_thread(dispute, "Closed."),
        ]

    def _side_people(self, dispute: Dispute, side: str) -> list[Person]:
        people = list(dispute.actors(self.directory, side))
        practitioner = self.directory.get(dispute.practitioner_of(side))
        if practitioner is not None and practitioner not in people:
            people.append(practitioner)
        return people

    # ---- the timekeeper's events -----------------------------------------------------------

    def _timer_people(self, dispute: Dispute, step_id: str, now: datetime) -> list[Person]:
        """Who a step's nudges go to: its side's current actors (both sides for a joint step)."""
        state = next((s for s in dispute.steps if s.step_id == step_id and s.is_open), None)
        who = dispute.step_def(state).who if state is not None else "both"
        sides = [who] if who in ("raising", "receiving") else ["raising", "receiving"]
        people: list[Person] = []
        for side in sides:
            people += [p for p in dispute.actors(self.directory, side) if p not in people]
        return people + [p for p in self._on_call(dispute, now) if p not in people]

    def _on_call(self, dispute: Dispute, now: datetime) -> list[Person]:
        """Out of hours, an immediate-risk dispute also goes to both agencies' on-call route."""
        if "urgent" not in dispute.flags or self.calendar.in_working_hours(now):
            return []
        route = dispute.policy.out_of_hours.route
        people: list[Person] = []
        for side in ("raising", "receiving"):
            people += [
                p
                for p in self.directory.role_holders(dispute.agency_of(side), route)
                if p not in people
            ]
        return people

    def _step_title(self, dispute: Dispute, event: Event) -> str:
        stage = dispute.policy.stage(event.data["stage"])
        return next(s.title for s in stage.steps if s.id == event.data["step"])

    def _on_ReminderSent(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        due = self.when(datetime.fromisoformat(event.data["due"]), now)
        title = self._step_title(dispute, event)
        people = self._timer_people(dispute, event.data["step"], now)
        if event.data.get("to"):
            # A snoozed reminder comes back to the one person who snoozed it.
            people = [p for p in people if p.id == event.data["to"]]
        out = self.direct(
            people,
            dispute,
            f"Reminder: {dispute.ref} - '{title}' is due by {due}.",
            buttons=(*PARTY_BUTTONS, ActionId.SNOOZE),
        )
        if not event.data.get("to"):
            out.append(self.in_thread(dispute, f"Reminder: the current step is due by {due}."))
        return out

    def _on_StepDueToday(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        due = self.when(datetime.fromisoformat(event.data["due"]), now)
        title = self._step_title(dispute, event)
        out = self.direct(
            self._timer_people(dispute, event.data["step"], now),
            dispute,
            f"Due today: {dispute.ref} - '{title}' is due by {due}.",
            buttons=(*PARTY_BUTTONS, ActionId.SNOOZE),
        )
        out.append(self.in_thread(dispute, f"Due today: the current step is due by {due}."))
        return out

    def _on_DeadlineBreached(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        due = self.when(datetime.fromisoformat(event.data["due"]), now)
        title = self._step_title(dispute, event)
        if event.data.get("will_escalate"):
            grace = dispute.policy.escalation.grace.describe()
            then = (
                f"It will be escalated to the next stage automatically in {grace} unless it moves."
            )
        elif dispute.stage < dispute.policy.last_stage:
            then = "Please escalate it to the next stage, or record why not."
        else:
            then = (
                "This is the final stage: please agree the outcome or record the reason for delay."
            )
        out = self.direct(
            self._timer_people(dispute, event.data["step"], now),
            dispute,
            f"Overdue: {dispute.ref} - '{title}' was due by {due}. {then}",
            buttons=(ActionId.ESCALATE, ActionId.PROPOSE_RESOLUTION, ActionId.ADD_NOTE),
        )
        if dispute.stage < dispute.policy.last_stage:
            told = {m.recipient.id for m in out}
            following = dispute.policy.stage(dispute.stage + 1)
            coming: list[Person] = []
            for side in ("raising", "receiving"):
                coming += [
                    p
                    for p in dispute.actors(self.directory, side, following.number)
                    if p not in coming and p.id not in told
                ]
            out += self.direct(
                coming,
                dispute,
                f"For your information: {dispute.ref} is overdue at stage {dispute.stage} and may "
                f"come to you at stage {following.number} ({following.name}).",
                buttons=(ActionId.VIEW_DETAILS,),
            )
        out.append(self.in_thread(dispute, f"Overdue: the step due by {due} was not done in time."))
        return out

    def _on_OverallTargetBreached(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        target = dispute.policy.overall_target
        rule = target.deadline.describe() if target else "the overall target"
        if event.data.get("reason_required"):
            # The escalating (raising) agency owes the record of why it is taking longer.
            out = self.direct(
                dispute.actors(self.directory, "raising"),
                dispute,
                f"{dispute.ref} has passed the policy's overall target ({rule}). The policy asks "
                "for a recorded reason for the delay and confirmation that the child or adult "
                "remains safe.",
                buttons=(ActionId.RECORD_DELAY_REASON, ActionId.VIEW_DETAILS),
            )
        else:
            out = self.direct(
                dispute.parties(self.directory),
                dispute,
                f"{dispute.ref} has passed the policy's overall target ({rule}).",
                buttons=(ActionId.VIEW_DETAILS,),
            )
        out.append(self.in_thread(dispute, f"Past the overall target ({rule})."))
        return out

    def _on_AutoEscalationSkipped(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        return [self.in_thread(dispute, "Overdue, and there is no further stage to escalate to.")]

    # ---- check-backs ---------------------------------------------------------------------

    def _on_ActionReviewDue(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        assert dispute.resolution is not None
        items = [a for a in dispute.resolution.actions if a.id in event.data["actions"]]
        people = dispute.parties(self.directory)
        for item in items:
            owner = self.directory.get(item.owner)
            if owner is not None and owner not in people:
                people.append(owner)
        out = self.direct(
            people,
            dispute,
            f"Check-back on {dispute.ref}: the agreed actions below were due for review. Were "
            "they implemented? If not, the dispute can be reopened.",
            facts=[
                (
                    f"Action {item.id}",
                    f"{item.description} (owner {self.name(item.owner)}, review "
                    f"{item.review_date:%a} {item.review_date.day} {item.review_date:%b})",
                )
                for item in items
            ],
            buttons=(ActionId.REVIEW_ACTIONS, ActionId.VIEW_DETAILS),
        )
        out.append(self.in_thread(dispute, "Check-back: agreed actions are due for review."))
        return out

    def _on_ActionsImplemented(
        self, dispute: Dispute, event: Event, now: datetime
    ) -> list[Message]:
        return [
            self.in_thread(
                dispute,
                f"Agreed actions confirmed as implemented by {self.name(event.actor)}.",
            )
        ]

    def _on_DisputeReopened(self, dispute: Dispute, event: Event, now: datetime) -> list[Message]:
        stage = dispute.current_stage
        step = dispute.next_due
        by = f" Next deadline: {self.when(step.due_at, now)}." if step else ""
        out = self.direct(
            dispute.parties(self.directory),
            dispute,
            f"{dispute.ref} has been reopened at stage {stage.number} ({stage.name}) by "
            f"{self.name(event.actor)}: the agreed actions were not implemented.{by}",
            facts=[("Reason", event.data["reason"])],
            buttons=PARTY_BUTTONS,
        )
        out.append(self.in_thread(dispute, f"Reopened at stage {stage.number}."))
        return out

    def _agency(self, dispute: Dispute, side: str) -> str:
        return self.directory.agency_name(dispute.agency_of(side))


ROOT_EVENTS = {
    "DisputeOpened",
    "StageEscalated",
    "ResolutionProposed",
    "ResolutionConfirmed",
    "ResolutionRejected",
    "DisputeWithdrawn",
    "DisputeClosed",
    "Acknowledged",
    "ExceptionalRouteTaken",
    "DeadlineBreached",
    "DisputeReopened",
}


def _and_list(names: list[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"
