"""Applies commands to disputes: one command in, one transaction out (state, events, messages).

Authorisation is decided by the domain and enforced here; refusals are recorded. May import
the domain and the store; never a platform library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bot import timers
from bot.clock import Clock
from bot.config import Partnership
from bot.digest import build_digest, horizon
from bot.directory import Directory, Person
from bot.disputes import Action, Dispute, DisputeDetails, DisputeError, NotAllowed, open_dispute
from bot.messages import Message
from bot.notices import Notices
from bot.policy import PlannedStep, plan_timeline
from store.repository import Conflict, NotFound, Store

RETRIES = 3


@dataclass
class TickReport:
    """What one tick of the timekeeper did."""

    fired: int = 0
    conflicts: int = 0
    digest: bool = False
    events: dict[str, int] = field(default_factory=dict)  # what the timers did, by event type


@dataclass
class Outcome:
    """What happened, and what to tell the person who asked."""

    ok: bool
    text: str
    dispute: Dispute | None = None
    changed: bool = False
    messages: list[Message] = field(default_factory=list)


class Service:
    """The bot's use cases, each a single unit of work."""

    def __init__(self, store: Store, partnership: Partnership, clock: Clock) -> None:
        self.store = store
        self.base = partnership
        self.clock = clock
        self._partnership: Partnership | None = None

    # ---- the directory, with people remembered from chat -------------------------------

    @property
    def partnership(self) -> Partnership:
        """The partnership, its directory extended with people remembered from chat."""
        if self._partnership is None:
            with self.store.unit() as session:
                seen = self.store.people_seen(session)
            self._partnership = self.base.with_people(seen)
        return self._partnership

    @property
    def directory(self) -> Directory:
        """The directory as the bot knows it now."""
        return self.partnership.directory

    def notices(self) -> Notices:
        """The message builder for this partnership."""
        return Notices(self.directory, self.partnership.calendar)

    def person(self, person_id: str) -> Person | None:
        """A person in the directory."""
        return self.directory.get(person_id)

    def remember_person(self, data: dict[str, Any]) -> Person:
        """Add or update a person the directory did not know (their agency and manager)."""
        person = Person.model_validate(data)
        if person.agency not in self.directory.agencies:
            raise DisputeError(f"'{person.agency}' is not an agency in the partnership directory")
        if person.manager and self.directory.get(person.manager) is None:
            raise DisputeError(f"nobody in the directory has the id '{person.manager}'")
        with self.store.unit() as session:
            self.store.remember_person(
                session, person.model_dump(mode="json", exclude_none=True), now=self.clock.now()
            )
            seen = self.store.people_seen(session)
        # Replaced, never reset to None: a reset made the next reader load it lazily, and a
        # reader inside a transaction (another request's action, a tick) then opened a second
        # one, which on SQLite waits for the first's write lock: 30 s, then "database is locked".
        self._partnership = self.base.with_people(seen)
        return person

    def identify(
        self, *, slack_id: str | None = None, teams_id: str | None = None, email: str | None = None
    ) -> Person | None:
        """The directory person behind a platform identity, if known."""
        d = self.directory
        found = (
            (slack_id and d.by_slack(slack_id))
            or (teams_id and d.by_teams(teams_id))
            or (email and d.by_email(email))
        )
        return found or None

    # ---- opening --------------------------------------------------------------------------

    def open(self, details: DisputeDetails) -> Outcome:
        """Log a new dispute, tell the other side, and give the raiser the reference."""
        now = self.clock.now()
        p = self.partnership
        try:
            with self.store.unit() as session:
                year = p.calendar.local(now).year
                ref = self.store.next_ref(session, p.config.reference_prefix, year)
                dispute = open_dispute(
                    ref=ref,
                    partnership_id=p.id,
                    policy=p.policy,
                    details=details,
                    directory=self.directory,
                    calendar=p.calendar,
                    now=now,
                )
                messages = self.notices().for_events(dispute, dispute.new_events, now)
                self.store.save(
                    session,
                    dispute,
                    messages,
                    participants=self._participants(dispute),
                    wake_at=self._wake(dispute),
                    now=now,
                )
        except DisputeError as exc:
            return Outcome(False, _sentence(str(exc)))
        step = dispute.next_due
        when = self.notices().when(step.due_at, now) if step else "no fixed deadline"
        return Outcome(
            True, f"Logged as {dispute.ref}. Next deadline: {when}.", dispute, True, messages
        )

    # ---- acting on a dispute ------------------------------------------------------------

    def act(self, ref: str, person_id: str, action: Action, **kwargs: Any) -> Outcome:
        """Carry out `action` on dispute `ref` for a person, or say plainly why not."""
        person = self.directory.get(person_id)
        if person is None:
            return Outcome(
                False,
                "You are not in the partnership directory, so you cannot act on disputes yet.",
            )
        handler = _HANDLERS.get(action)
        if handler is None:
            return Outcome(False, f"Unknown action '{action}'.")
        for attempt in range(RETRIES):
            now = self.clock.now()
            try:
                with self.store.unit() as session:
                    dispute = self.store.load(session, ref, lock=True)
                    try:
                        changed, text = handler(self, dispute, person, now, **kwargs)
                    except NotAllowed as exc:
                        # The refusal itself is part of the record.
                        self.store.save(session, dispute, wake_at=self._wake(dispute), now=now)
                        return Outcome(False, f"Sorry, you can't do that: {exc}.", dispute)
                    messages = (
                        self.notices().for_events(dispute, dispute.new_events, now)
                        if changed
                        else []
                    )
                    self.store.save(
                        session,
                        dispute,
                        messages,
                        participants=self._participants(dispute),
                        wake_at=self._wake(dispute),
                        now=now,
                    )
                    return Outcome(True, text, dispute, changed, messages)
            except NotFound:
                return Outcome(False, f"There is no dispute with reference {ref.strip().upper()}.")
            except DisputeError as exc:
                return Outcome(False, _sentence(str(exc)))
            except Conflict:
                if attempt == RETRIES - 1:
                    return Outcome(
                        False,
                        "Someone else changed this dispute at the same moment; please try again.",
                    )
        raise AssertionError("unreachable")

    def may(self, ref: str, person_id: str, action: Action) -> Outcome:
        """Whether the person may do `action` on `ref` now: the dispute if so; if not, why,
        with the refusal recorded.

        For a platform about to open an action's form: the form is not shown to someone who
        could not submit it, and the attempt goes on the dispute's record as `act` would put it.
        """
        person = self.directory.get(person_id)
        if person is None:
            return Outcome(
                False,
                "You are not in the partnership directory, so you cannot act on disputes yet.",
            )
        for _ in range(RETRIES):
            now = self.clock.now()
            try:
                with self.store.unit() as session:
                    dispute = self.store.load(session, ref, lock=True)
                    try:
                        dispute.require(person, action, self.directory, now)
                    except NotAllowed as exc:
                        self.store.save(session, dispute, wake_at=self._wake(dispute), now=now)
                        return Outcome(False, f"Sorry, you can't do that: {exc}.", dispute)
                    return Outcome(True, "", dispute)
            except NotFound:
                return Outcome(False, f"There is no dispute with reference {ref.strip().upper()}.")
            except Conflict:
                continue  # changed at that moment: ask again of the dispute as it is now
        return Outcome(
            False, "Someone else changed this dispute at the same moment; please try again."
        )

    def view(self, ref: str, person_id: str) -> Outcome:
        """The dispute, if the person may see it."""
        person = self.directory.get(person_id)
        try:
            with self.store.reading() as session:
                dispute = self.store.load(session, ref)
        except NotFound:
            return Outcome(False, f"There is no dispute with reference {ref.strip().upper()}.")
        if person is None:
            return Outcome(False, "You are not in the partnership directory.")
        reason = dispute.allowed(person, Action.VIEW, self.directory)
        if reason is not None:
            return Outcome(False, f"Sorry, you can't see {dispute.ref}: {reason}.")
        return Outcome(True, "", dispute)

    def my_open(self, person_id: str) -> list[Dispute]:
        """A person's open disputes, soonest deadline first."""
        with self.store.reading() as session:
            return self.store.open_for_person(session, person_id)

    def timeline(self, start: datetime | None = None) -> list[PlannedStep]:
        """The partnership's policy with real dates from `start` (now by default)."""
        return plan_timeline(
            self.partnership.policy, start or self.clock.now(), self.partnership.calendar
        )

    # ---- the timekeeper -------------------------------------------------------------------

    def _wake(self, dispute: Dispute) -> datetime | None:
        return timers.next_wakeup(dispute, self.partnership.calendar)

    def tick(self, limit: int = 100) -> TickReport:
        """Set off every timer that has come (reminders, breaches, escalations) and the digest."""
        now = self.clock.now()
        report = TickReport()
        # Loaded before any transaction: a replica's first tick otherwise loaded it inside one
        # (see remember_person) and, on SQLite, waited on itself on every tick.
        _ = self.partnership
        with self.store.reading() as session:
            refs = self.store.due_for_timers(session, now=now, limit=limit)
        for ref in refs:
            try:
                for event_type in self._tick_one(ref, now):
                    report.fired += 1
                    report.events[event_type] = report.events.get(event_type, 0) + 1
            except Conflict:
                # Someone acted on it at the same moment; its new wake-up time brings it back.
                report.conflicts += 1
        report.digest = self.send_digest_if_due(now)
        return report

    def _tick_one(self, ref: str, now: datetime) -> list[str]:
        """Set off one dispute's due timers; the types of the events they recorded."""
        with self.store.unit() as session:
            dispute = self.store.load(session, ref, lock=True)
            timers.fire_due(dispute, self.directory, self.partnership.calendar, now)
            happened = [e.type for e in dispute.new_events]
            messages = self.notices().for_events(dispute, dispute.new_events, now)
            self.store.save(
                session,
                dispute,
                messages,
                participants=self._participants(dispute),
                wake_at=self._wake(dispute),
                now=now,
            )
        return happened

    def digest_message(self, now: datetime | None = None) -> Message:
        """The oversight digest: breached disputes and those due within a working day."""
        now = now or self.clock.now()
        p = self.partnership
        # Only the disputes it lists are loaded and rebuilt (indexed on next_due_at); the rest
        # are counted: with every open dispute rebuilt it took 2 s at 10,000 (BENCHMARKS.md).
        with self.store.reading() as session:
            near, open_count = self.store.open_disputes_due_by(
                session, p.id, horizon(p.calendar, now)
            )
        return build_digest(near, self.notices(), now, open_count=open_count)

    def send_digest_if_due(self, now: datetime) -> bool:
        """Queue today's digest once, at the configured time, on working days only."""
        p = self.partnership
        local = p.calendar.local(now)
        if not p.calendar.is_working_day(local.date()) or local.time() < p.config.digest_time:
            return False
        key = f"digest:{p.id}:{local.date()}"
        with self.store.reading() as session:
            if self.store.has_run(session, key):
                # Checked before building: every tick after digest time would otherwise build
                # the whole digest (all open disputes) only to find it already sent.
                return False
        message = self.digest_message(now)
        with self.store.unit() as session:
            if not self.store.run_once(session, key, now=now):
                return False  # another replica sent it meanwhile
            if not message.facts:
                return False  # nothing near breach: no post, so the channel stays worth reading
            message.key = key
            self.store.enqueue(session, [message], now=now)
        return True

    def claim_once(self, key: str) -> bool:
        """True the first time `key` is claimed (a submitted form, say); False ever after."""
        with self.store.unit() as session:
            return self.store.run_once(session, key, now=self.clock.now())

    def _participants(self, dispute: Dispute) -> dict[str, str]:
        out = {
            p.id: "involved" for p in dispute.involved(self.directory) if not p.has_role("admin")
        }
        for p in dispute.parties(self.directory):
            out[p.id] = "party"
        out[dispute.details.raised_by] = "raiser"
        return out


# ---- one function per action: (service, dispute, person, now, **kwargs) -> (changed, reply) ----


def _acknowledge(s: Service, d: Dispute, p: Person, now: datetime) -> tuple[bool, str]:
    if d.acknowledge(p, s.directory, s.partnership.calendar, now):
        return True, f"Thank you: you acknowledged {d.ref} at {s.notices().when(now, now)}."
    side = d.side_of(p)
    assert side is not None
    who, when = d.acknowledged_by(side) or (p.id, now)
    return (
        False,
        f"{d.ref} was already acknowledged for your agency by {s.notices().name(who)} at {s.notices().when(when, now)}.",
    )


def _add_note(
    s: Service,
    d: Dispute,
    p: Person,
    now: datetime,
    *,
    text: str,
    with_whom: str | None = None,
    held_at: datetime | None = None,
) -> tuple[bool, str]:
    d.add_note(
        p, s.directory, s.partnership.calendar, now, text=text, with_whom=with_whom, held_at=held_at
    )
    return True, f"Your note is on the record of {d.ref}."


def _escalate(
    s: Service,
    d: Dispute,
    p: Person,
    now: datetime,
    *,
    reason: str,
    exceptional: bool = False,
    urgent: bool | None = None,
    from_stage: int | None = None,
) -> tuple[bool, str]:
    if from_stage is not None and from_stage != d.stage and d.is_open:
        # Pressed at stage N while someone else escalated it first (two managers at once, or
        # a retry after a conflict): the escalation they asked for has happened, once.
        stage = d.current_stage
        raise DisputeError(
            f"{d.ref} has already been escalated to stage {stage.number} ({stage.name}), "
            "so nothing more was done"
        )
    d.escalate(
        p,
        s.directory,
        s.partnership.calendar,
        now,
        reason=reason,
        exceptional=exceptional,
        urgent=urgent,
    )
    stage = d.current_stage
    names = ", ".join(x.name for x in d.parties(s.directory))
    return True, f"{d.ref} is now at stage {stage.number} ({stage.name}). Told: {names}."


def _propose(
    s: Service,
    d: Dispute,
    p: Person,
    now: datetime,
    *,
    outcome: str,
    actions: list[tuple[str, str, date]] | None = None,
) -> tuple[bool, str]:
    d.propose_resolution(
        p, s.directory, s.partnership.calendar, now, outcome=outcome, actions=actions or []
    )
    return (
        True,
        f"Your proposed resolution to {d.ref} has been sent to the other agency to confirm.",
    )


def _respond(
    s: Service, d: Dispute, p: Person, now: datetime, *, confirm: bool, reason: str | None = None
) -> tuple[bool, str]:
    d.respond_to_resolution(
        p, s.directory, s.partnership.calendar, now, confirm=confirm, reason=reason
    )
    if confirm:
        return True, f"{d.ref} is resolved. Both agencies have the agreed outcome in writing."
    return True, f"You rejected the proposed resolution; {d.ref} continues at stage {d.stage}."


def _delay(
    s: Service, d: Dispute, p: Person, now: datetime, *, reason: str, safety_confirmed: bool
) -> tuple[bool, str]:
    d.record_delay_reason(p, s.directory, now, reason=reason, safety_confirmed=safety_confirmed)
    return True, f"The reason for delay is on the record of {d.ref}."


def _learning(s: Service, d: Dispute, p: Person, now: datetime, *, text: str) -> tuple[bool, str]:
    d.record_learning(p, s.directory, now, text=text)
    return True, f"Learning point recorded for {d.ref}; it will go to the board."


def _withdraw(s: Service, d: Dispute, p: Person, now: datetime, *, reason: str) -> tuple[bool, str]:
    d.withdraw(p, s.directory, now, reason=reason)
    return True, f"{d.ref} is withdrawn."


def _close(s: Service, d: Dispute, p: Person, now: datetime, *, reason: str) -> tuple[bool, str]:
    d.close(p, s.directory, now, reason=reason)
    return True, f"{d.ref} is closed."


def _review_actions(
    s: Service,
    d: Dispute,
    p: Person,
    now: datetime,
    *,
    implemented: bool,
    reason: str | None = None,
) -> tuple[bool, str]:
    d.review_actions(
        p, s.directory, s.partnership.calendar, now, implemented=implemented, reason=reason
    )
    if implemented:
        return True, f"Thank you: the agreed actions of {d.ref} are recorded as implemented."
    return True, f"{d.ref} is reopened at stage {d.stage}; the parties have been told."


def _snooze(s: Service, d: Dispute, p: Person, now: datetime) -> tuple[bool, str]:
    again = d.snooze(p, s.directory, s.partnership.calendar, now)
    return True, f"I'll remind you about {d.ref} again at {s.notices().when(again, now)}."


_HANDLERS: dict[Action, Callable[..., tuple[bool, str]]] = {
    Action.ACKNOWLEDGE: _acknowledge,
    Action.ADD_NOTE: _add_note,
    Action.ESCALATE: _escalate,
    Action.PROPOSE_RESOLUTION: _propose,
    Action.RESPOND_TO_RESOLUTION: _respond,
    Action.RECORD_DELAY_REASON: _delay,
    Action.RECORD_LEARNING: _learning,
    Action.WITHDRAW: _withdraw,
    Action.REVIEW_ACTIONS: _review_actions,
    Action.SNOOZE: _snooze,
    Action.CLOSE: _close,
}


def _sentence(text: str) -> str:
    text = text.strip()
    return (
        (text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else "."))
        if text
        else text
    )
