"""The daily oversight digest: disputes breached or due within one working day.

Pure domain. Like every channel post it carries only references, agencies, stages and
deadlines, never a case's details.
"""

from __future__ import annotations

from datetime import datetime

from bot.disputes import Dispute, StepState
from bot.messages import Message, Recipient
from bot.notices import Notices
from bot.workdays import WorkingCalendar


def horizon(calendar: WorkingCalendar, now: datetime) -> datetime:
    """The digest lists the open disputes whose soonest deadline is at or before this."""
    return calendar.add_working_days(now, 1)


def _soonest(dispute: Dispute) -> StepState | None:
    return dispute.next_due if dispute.is_open else None


def build_digest(
    disputes: list[Dispute], notices: Notices, now: datetime, *, open_count: int | None = None
) -> Message:
    """Group the breached and nearly due disputes by stage, soonest to breach first.

    `disputes` may be every open dispute, or only those due by the `horizon` (what the service
    loads) with `open_count` saying how many are open in all.
    """
    calendar = notices.calendar
    due_by = horizon(calendar, now)
    watched: list[tuple[Dispute, StepState]] = []
    for dispute in disputes:
        step = _soonest(dispute)
        if step is not None and step.due_at <= due_by:
            watched.append((dispute, step))
    # Ties in the order opened, whatever order the disputes were read in.
    watched.sort(key=lambda pair: (pair[1].due_at, pair[0].opened_at, pair[0].ref))
    breached = sum(1 for _, step in watched if step.due_at <= now)
    due_soon = len(watched) - breached
    local = calendar.local(now)
    heading = (
        f"Escalation digest for {local:%a} {local.day} {local:%b}: {breached} overdue, "
        f"{due_soon} due within one working day, "
        f"{len(disputes) if open_count is None else open_count} open in all."
    )
    facts: list[tuple[str, str]] = []
    for number in sorted({d.stage for d, _ in watched}):
        for dispute, step in (pair for pair in watched if pair[0].stage == number):
            state = "OVERDUE since" if step.due_at <= now else "due"
            facts.append(
                (
                    f"Stage {number} - {dispute.ref}",
                    f"{notices.agencies(dispute)}; {state} {notices.when(step.due_at, now)}",
                )
            )
    if not facts:
        heading += " Nothing is overdue or due within one working day."
    return Message(Recipient.channel("oversight"), heading, facts=facts, kind="digest")
