"""Where flows meet the service: start, resume and finish conversations, and the text commands.

Platform-neutral: every adapter calls these, so Slack, Teams and the console behave the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.archive import Archive
from bot.directory import Person, role_label
from bot.disputes import Dispute
from bot.flows.actions import ActionFlow, action_flows
from bot.flows.engine import FlowContext, FlowRunner, FlowState, Notice
from bot.flows.intake import details_from, intake_flow
from bot.messages import ActionId, Button, Message, Recipient
from bot.service import Outcome, Service

HELP = """Commands:
  escalate                 log a new professional disagreement
  escalate list            your open disputes and their next deadlines
  escalate status REF      where a dispute is, and what happens next
  escalate timeline        the partnership's policy, with real dates from today
  escalate digest          disputes overdue or due within one working day
  escalate help            this help"""


@dataclass
class Reply:
    """What to show the person who asked: text, facts and buttons, privately."""

    text: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    ok: bool = True

    def as_message(self, person_id: str) -> Message:
        """As a neutral message to the person."""
        return Message(
            Recipient.person(person_id), self.text, self.facts, self.buttons, kind="reply"
        )


class Conversations:
    """The conversations a person can have with the bot."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.intake = intake_flow()
        self.actions = action_flows()

    def context(self, person: Person | None, display_name: str | None = None) -> FlowContext:
        """What flows consult, at this moment."""
        p = self.service.partnership
        return FlowContext(
            p.directory, p.policy, p.calendar, self.service.clock.now(), person, display_name
        )

    # ---- saved progress -----------------------------------------------------------------

    def resume(
        self,
        user_key: str,
        person: Person | None,
        *,
        display_name: str | None = None,
        fresh: bool = False,
    ) -> FlowRunner:
        """The person's intake in progress, or a new one."""
        ctx = self.context(person, display_name)
        state = None if fresh else self._load(user_key, self.intake.name)
        return FlowRunner(self.intake, ctx, state)

    def save(self, user_key: str, runner: FlowRunner) -> None:
        """Keep a half-finished flow so an interruption loses nothing."""
        with self.service.store.unit() as session:
            self.service.store.save_flow_state(
                session,
                user_key,
                runner.flow.name,
                runner.state.to_data(),
                now=self.service.clock.now(),
            )

    def forget(self, user_key: str, flow: str) -> None:
        """Drop saved progress."""
        with self.service.store.unit() as session:
            self.service.store.save_flow_state(
                session, user_key, flow, None, now=self.service.clock.now()
            )

    def _load(self, user_key: str, flow: str) -> FlowState | None:
        with self.service.store.reading() as session:
            data = self.service.store.flow_state(session, user_key, flow)
        return FlowState.from_data(data) if data else None

    # ---- intake ---------------------------------------------------------------------------

    def on_notices(self, user_key: str, runner: FlowRunner, notices: list[Notice]) -> None:
        """Act on what a flow said: an immediate-risk answer pings the safeguarding lead now."""
        for notice in notices:
            if notice.urgent and not runner.state.context.get("risk_alerted"):
                person = runner.ctx.person
                answers = runner.state.answers
                agency = person.agency if person else answers.get("own_agency")
                if agency is None:
                    # Not in the directory and no agency given yet: the intake tells them
                    # again, and we alert, once they name their agency.
                    continue
                self.alert_immediate_risk(
                    person,
                    user_key,
                    agency_id=agency,
                    name=answers.get("own_name") or runner.ctx.display_name,
                )
                runner.state.context["risk_alerted"] = True

    def alert_immediate_risk(
        self,
        person: Person | None,
        user_key: str,
        *,
        agency_id: str | None = None,
        name: str | None = None,
    ) -> None:
        """Tell the person's designated safeguarding lead (and on-call out of hours) at once."""
        # Someone the directory does not know yet is alerted on by the agency they named.
        agency_id = person.agency if person is not None else agency_id
        if agency_id is None or agency_id not in self.service.directory.agencies:
            return
        person_id = person.id if person is not None else None
        who = person.name if person is not None else (name or "Someone not yet in the directory")
        s = self.service
        policy = s.partnership.policy
        now = s.clock.now()
        roles = [policy.immediate_risk.route, *policy.immediate_risk.also]
        if not s.partnership.calendar.in_working_hours(now):
            roles.append(policy.out_of_hours.route)
        people: list[Person] = []
        for role in roles:
            people += [
                p
                for p in s.directory.role_holders(agency_id, role, for_person=person_id)
                if p not in people and p.id != person_id
            ]
        agency = s.directory.agency_name(agency_id)
        messages = [
            Message(
                Recipient.person(p.id),
                f"URGENT: {who} ({agency}) has just reported that a child or adult is at immediate "
                "risk of significant harm. Please contact them now. The disagreement is being logged and "
                "you will get its reference.",
                kind="direct",
                key=f"risk:{user_key}:{now.isoformat()}:{p.id}",
            )
            for p in people
        ]
        with s.store.unit() as session:
            s.store.enqueue(session, messages, now=now)

    def finish_intake(
        self, user_key: str, runner: FlowRunner, *, platform_ids: dict[str, str] | None = None
    ) -> Outcome:
        """Open the dispute from a completed intake; remember an unknown person first."""
        answers = runner.state.answers
        ctx = runner.ctx
        person = ctx.person
        if person is None:
            data: dict[str, Any] = {
                "id": _new_person_id(answers["own_name"], self.service),
                "name": answers["own_name"],
                "agency": answers["own_agency"],
                "roles": ["practitioner"],
                **({"manager": answers["own_manager"]} if answers.get("own_manager") else {}),
                **(platform_ids or {}),
            }
            person = self.service.remember_person(data)
        outcome = self.service.open(details_from(answers, ctx, person.id))
        if outcome.ok:
            self.forget(user_key, runner.flow.name)
        return outcome

    # ---- actions --------------------------------------------------------------------------

    def action_flow(self, button: ActionId) -> ActionFlow:
        """The flow behind a button."""
        return self.actions[button]

    def run_action(
        self, ref: str, person: Person, button: ActionId, answers: dict[str, Any]
    ) -> Outcome:
        """Carry out a button's action with its flow's answers."""
        if button == ActionId.SEND_RECORD:
            return Archive(self.service).send_record(ref, person.id)
        flow = self.actions[button]
        ctx = self.context(person)
        return self.service.act(ref, person.id, flow.action, **flow.command(answers, ctx))

    # ---- text commands ------------------------------------------------------------------

    def command(self, text: str, person: Person | None) -> Reply | None:
        """Answer `list`, `status REF`, `timeline` and `help`; None means start the intake."""
        words = text.strip().split()
        if words and words[0].lower().lstrip("/") == "escalate":
            words = words[1:]
        if not words:
            return None
        verb = words[0].lower()
        if verb == "help":
            return Reply(HELP)
        if verb == "timeline":
            return self.timeline_reply()
        if person is None:
            return Reply(
                "You are not in the partnership directory yet. Type escalate to log a disagreement; you'll be asked for your agency and line manager, and remembered next time.",
                ok=False,
            )
        if verb == "digest":
            digest = self.service.digest_message()
            return Reply(digest.text, digest.facts)
        if verb == "list":
            return self.list_reply(person)
        if verb == "status":
            if len(words) < 2:
                return Reply("Which dispute? For example: escalate status WST-2026-0001", ok=False)
            return self.status_reply(words[1], person)
        return Reply(f"I don't know the command '{verb[:30]}'.\n{HELP}", ok=False)

    def timeline_reply(self) -> Reply:
        """The policy's steps with real dates from now."""
        s = self.service
        now = s.clock.now()
        notices = s.notices()
        facts = []
        for row in s.timeline(now):
            if row.condition is not None:
                continue
            due = (
                notices.when(row.due, now)
                if row.due
                else f"{notices.when(row.local_target_due, now)} (local target)"
            )
            facts.append(
                (f"Stage {row.stage} ({row.stage_name}): {row.title}", f"{row.rule} - by {due}")
            )
        policy = s.partnership.policy
        return Reply(
            f"{policy.name}: if a disagreement arose now and each step took its full time:", facts
        )

    def list_reply(self, person: Person) -> Reply:
        """The person's open disputes, soonest deadline first."""
        disputes = self.service.my_open(person.id)
        if not disputes:
            return Reply("You have no open disputes.")
        now = self.service.clock.now()
        notices = self.service.notices()
        facts = [
            (
                d.ref,
                f"stage {d.stage} ({d.current_stage.name}), {d.status.label}, next deadline {notices.next_deadline(d, now)}; you are {self.role_in(d, person)}",
            )
            for d in disputes
        ]
        return Reply(f"Your open disputes ({len(disputes)}):", facts)

    def role_in(self, dispute: Dispute, person: Person) -> str:
        """The person's part in a dispute, in words."""
        if person.id == dispute.details.raised_by:
            return "the raiser"
        d = self.service.directory
        for side in ("raising", "receiving"):
            if person.id in {p.id for p in dispute.actors(d, side)}:
                role = dispute.current_stage.roles[side]
                return f"the {side} agency's {role_label(role)}"
        if person.has_role("admin"):
            return "a partnership admin"
        return "involved (line management or safeguarding lead)"

    def status_reply(self, ref: str, person: Person) -> Reply:
        """A dispute's details, stage and deadlines, for someone allowed to see them."""
        if not re.fullmatch(r"[A-Za-z]{2,8}-\d{4}-\d{1,6}", ref.strip()):
            return Reply(
                f"'{ref[:40]}' doesn't look like a dispute reference (for example WST-2026-0001).",
                ok=False,
            )
        outcome = self.service.view(ref, person.id)
        if not outcome.ok or outcome.dispute is None:
            return Reply(outcome.text, ok=False)
        return self.status_of(outcome.dispute, person)

    def status_of(self, d: Dispute, person: Person) -> Reply:
        """Where a dispute stands, for someone already known to be allowed to see it."""
        s = self.service
        now = s.clock.now()
        notices = s.notices()
        facts = [
            ("Agencies", notices.agencies(d)),
            ("Stage", f"{d.stage} of {d.policy.last_stage}: {d.current_stage.name}"),
            ("State", d.status.label),
            *notices.details_facts(d),
        ]
        for state in d.open_steps():
            step = d.step_def(state)
            late = " (overdue)" if state.due_at <= now else ""
            facts.append(
                (
                    f"Due: {step.title}",
                    f"{notices.when(state.due_at, now)}{' (local target)' if state.local_target else ''}{late}",
                )
            )
        if d.overall_due is not None and d.is_open:
            facts.append(("Overall target", notices.when(d.overall_due, now)))
        buttons = [Button(b, d.ref) for b in self.buttons_for(d, person)]
        return Reply(f"{d.ref}", facts, buttons)

    def buttons_for(self, dispute: Dispute, person: Person) -> list[ActionId]:
        """The buttons this person may press on this dispute now."""
        d = self.service.directory
        out: list[ActionId] = []
        for button, flow in self.actions.items():
            if button == ActionId.REJECT_RESOLUTION:
                continue  # offered together with confirm
            if dispute.allowed(person, flow.action, d) is None:
                out.append(button)
                if button == ActionId.CONFIRM_RESOLUTION:
                    out.append(ActionId.REJECT_RESOLUTION)
        return out


def _new_person_id(name: str, service: Service) -> str:
    base = re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".")[:50] or "person"
    candidate, n = base, 1
    while service.directory.get(candidate) is not None:
        n += 1
        candidate = f"{base}.{n}"
    return candidate
