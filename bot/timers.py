"""A dispute's timers: reminders, due-today notices, breaches, automatic escalation.

Pure domain. Every timer is derived from the dispute's state and its policy, so nothing about
timing is stored except which timers have already gone off (`StepState.fired`). The service
asks `next_wakeup` when it saves a dispute and calls `fire_due` when that moment has come.

Rules (DESIGN.md "Time"): nudges go out in working hours only, deferred to the next working
morning, except for a dispute flagged as an immediate risk, whose timers go off at any hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.directory import Directory
from bot.disputes import Dispute, DisputeError, StepState
from bot.workdays import WorkingCalendar

REMINDER = "reminder"
DUE = "due"
BREACH = "breach"
ESCALATE = "escalate"
OVERALL = "overall_target"
CHECKBACK = "checkback"
SNOOZED = "snoozed"


@dataclass(frozen=True)
class Timer:
    """One thing that will happen to a dispute at a moment, unless the dispute moves first."""

    kind: str
    at: datetime
    step: StepState | None = None
    person: str | None = None  # a snoozed reminder is for one person


def _previous_working_day(calendar: WorkingCalendar, d: date) -> date:
    d -= timedelta(days=1)
    while not calendar.is_working_day(d):
        d -= timedelta(days=1)
    return d


def _is_long(state: StepState, calendar: WorkingCalendar) -> bool:
    """Several working days (a reminder the day before) rather than hours (half-way)."""
    return calendar.working_days_between(state.started_at, state.due_at) >= 2


def _step_timers(dispute: Dispute, state: StepState, calendar: WorkingCalendar) -> list[Timer]:
    out: list[Timer] = []
    due_day = calendar.local(state.due_at).date()
    if _is_long(state, calendar):
        out.append(
            Timer(REMINDER, calendar.opening_of(_previous_working_day(calendar, due_day)), state)
        )
        out.append(Timer(DUE, calendar.opening_of(due_day), state))
    else:
        half = state.started_at + (state.due_at - state.started_at) / 2
        if half > state.started_at:
            out.append(Timer(REMINDER, half, state))
    out.append(Timer(BREACH, state.due_at, state))
    policy = dispute.policy
    step = dispute.step_def(state)
    if (
        policy.escalation.on_breach == "auto"
        and step.condition != "after_resolution"
        and state.stage < policy.last_stage
        and state.breached_at is not None
    ):
        grace = policy.escalation.grace.due(state.breached_at, calendar)
        out.append(Timer(ESCALATE, grace or state.breached_at, state))
    # A timer whose moment came before the step began (a short step started late in the day)
    # would only repeat what the person was just told.
    return [t for t in out if t.kind in (BREACH, ESCALATE) or t.at > state.started_at]


def pending(dispute: Dispute, calendar: WorkingCalendar) -> list[Timer]:
    """Every timer not yet gone off, at the moment it will go off, soonest first."""
    if not dispute.is_open:
        return _checkbacks(dispute, calendar)
    out: list[Timer] = []
    for state in dispute.open_steps():
        out += [t for t in _step_timers(dispute, state, calendar) if t.kind not in state.fired]
        out += [
            Timer(SNOOZED, datetime.fromisoformat(at), state, person)
            for person, at in state.snoozed.items()
        ]
    if dispute.overall_due is not None and "overall_target_breached" not in dispute.flags:
        out.append(Timer(OVERALL, dispute.overall_due))
    if "urgent" not in dispute.flags:
        out = [Timer(t.kind, calendar.next_working_moment(t.at), t.step, t.person) for t in out]
    return sorted(out, key=lambda t: t.at)


def _checkbacks(dispute: Dispute, calendar: WorkingCalendar) -> list[Timer]:
    """The morning of each agreed action's review date, once the resolution is confirmed."""
    if dispute.resolution is None or dispute.resolution.status != "confirmed":
        return []
    days = sorted(
        {
            a.review_date
            for a in dispute.resolution.actions
            if a.status == "open" and not a.review_sent
        }
    )
    return [Timer(CHECKBACK, calendar.next_working_moment(calendar.opening_of(d))) for d in days]


def next_wakeup(dispute: Dispute, calendar: WorkingCalendar) -> datetime | None:
    """When the dispute next needs the timekeeper, or None."""
    timers = pending(dispute, calendar)
    return timers[0].at if timers else None


def fire_due(
    dispute: Dispute, directory: Directory, calendar: WorkingCalendar, now: datetime
) -> int:
    """Set off every timer due by `now`, recording an event for each; returns how many."""
    fired = 0
    # One at a time: a breach starts the escalation timer, an escalation cancels the rest.
    while True:
        due = [t for t in pending(dispute, calendar) if t.at <= now]
        if not due:
            return fired
        _fire(dispute, due[0], directory, calendar, now)
        fired += 1


def _fire(
    dispute: Dispute,
    timer: Timer,
    directory: Directory,
    calendar: WorkingCalendar,
    now: datetime,
) -> None:
    if timer.kind == CHECKBACK:
        assert dispute.resolution is not None
        waiting = [
            a for a in dispute.resolution.actions if a.status == "open" and not a.review_sent
        ]
        # Everything due by today, and at least the earliest (so this timer cannot repeat).
        today = max(calendar.local(now).date(), min(a.review_date for a in waiting))
        due = [a for a in waiting if a.review_date <= today]
        for item in due:
            item.review_sent = True
        dispute.record("ActionReviewDue", now, None, actions=[a.id for a in due])
        return
    if timer.kind == OVERALL:
        dispute.flags.add("overall_target_breached")
        target = dispute.policy.overall_target
        required = target is not None and target.on_breach == "reason_for_delay"
        dispute.delay_reason_required = dispute.delay_reason_required or required
        dispute.record(
            "OverallTargetBreached",
            now,
            None,
            due=_iso(dispute.overall_due),
            reason_required=required,
        )
        return
    state = timer.step
    assert state is not None
    if timer.kind == SNOOZED:
        assert timer.person is not None
        del state.snoozed[timer.person]
        dispute.record(
            "ReminderSent",
            now,
            None,
            stage=state.stage,
            step=state.step_id,
            due=state.due_at.isoformat(),
            to=timer.person,
        )
        return
    state.fired.append(timer.kind)
    common = {"stage": state.stage, "step": state.step_id, "due": state.due_at.isoformat()}
    if timer.kind == REMINDER:
        state.reminded_at = now
        dispute.record("ReminderSent", now, None, **common)
    elif timer.kind == DUE:
        dispute.record("StepDueToday", now, None, **common)
    elif timer.kind == BREACH:
        state.status = "breached"
        state.breached_at = now
        auto = dispute.policy.escalation.on_breach == "auto" and (
            state.stage < dispute.policy.last_stage
        )
        dispute.record("DeadlineBreached", now, None, **common, will_escalate=auto)
    elif timer.kind == ESCALATE:
        title = dispute.step_def(state).title
        reason = (
            f"The deadline for '{title}' passed at stage {state.stage} and the policy "
            "escalates automatically."
        )
        try:
            dispute.escalate(None, directory, calendar, now, reason=reason)
        except DisputeError as exc:
            # Nothing to escalate to: say so once rather than trying at every tick.
            dispute.record("AutoEscalationSkipped", now, None, **common, reason=str(exc))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None
