"""The record's use cases: verify every chain, export a dispute's record (md, html, pdf), send
it privately in chat, the board report, and retention. One unit of work each; every export and
every retention run is itself an event on the dispute.

May import the domain and the store; never a platform library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot import timers
from bot.directory import Person
from bot.disputes import Action, Dispute, NotAllowed
from bot.messages import Message
from bot.records import (
    EXPORT_EVENT,
    REDACTION_EVENT,
    ChainCheck,
    DisputeRecord,
    build_record,
    plan_redaction,
    record_messages,
    redact_dispute,
    render_html,
    render_markdown,
    scrubber_for,
    verify_chain,
)
from bot.report import (
    BoardReport,
    build_report,
    case_from,
    report_csv,
    report_html,
    report_markdown,
)
from bot.service import Outcome, Service
from bot.workdays import format_day
from store import records as db
from store.repository import Conflict, NotFound, event_hash

FORMATS = ("md", "html", "pdf")
REPORT_FORMATS = ("html", "md", "csv")
RETRIES = 3


@dataclass
class Export:
    """A rendered record, or why there is none."""

    ok: bool
    text: str
    content: str | bytes = ""
    check: ChainCheck | None = None


@dataclass
class RetentionItem:
    """One dispute past its retention period: what goes, and whether it went."""

    ref: str
    closed_at: datetime
    due: datetime
    events: int
    fields: list[str] = field(default_factory=list)
    done: bool = False
    skipped: str | None = None


class Archive:
    """The partnership's record: exports, the board report, verification and retention."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.store = service.store

    @property
    def _tz(self) -> str:
        # Read before any unit of work opens: the partnership's first load is a unit of its own.
        return self.service.partnership.policy.timezone

    def _wake(self, dispute: Dispute) -> datetime | None:
        return timers.next_wakeup(dispute, self.service.partnership.calendar)

    # ---- verification ---------------------------------------------------------------------

    def verify(self) -> list[ChainCheck]:
        """Every dispute's chain, checked."""
        tz = self._tz
        with self.store.unit() as session:
            return [
                verify_chain(ref, events, event_hash, tz=tz) for ref, events in db.chains(session)
            ]

    # ---- a dispute's record ----------------------------------------------------------------

    def _recorded(
        self,
        ref: str,
        person_id: str,
        *,
        fmt: str,
        via: str,
        render: Callable[[DisputeRecord], str | bytes],
        messages: Callable[[DisputeRecord, Person], list[Message]] | None = None,
    ) -> Export:
        """Build the record for someone allowed to see it, render it and record the export."""
        s = self.service
        tz, directory, partnership = self._tz, s.directory, s.partnership
        person = directory.get(person_id)
        if person is None:
            return Export(False, f"Nobody in the partnership directory has the id '{person_id}'.")
        for _ in range(RETRIES):
            now = s.clock.now()
            try:
                with self.store.unit() as session:
                    dispute = self.store.load(session, ref, lock=True)
                    try:
                        dispute.require(person, Action.VIEW, directory, now)
                    except NotAllowed as exc:
                        # The refusal is part of the record too.
                        self.store.save(session, dispute, wake_at=self._wake(dispute), now=now)
                        return Export(
                            False, f"Sorry, you can't have the record of {dispute.ref}: {exc}."
                        )
                    events = db.chain(session, dispute.ref)
                    check = verify_chain(dispute.ref, events, event_hash, tz=tz)
                    record = build_record(
                        dispute,
                        events,
                        check,
                        directory,
                        partnership=partnership.config.name,
                        prepared_by=person.id,
                        now=now,
                        export_seq=max((e.seq for e in events), default=0) + 1,
                    )
                    content = render(record)
                    dispute.record(
                        EXPORT_EVENT,
                        now,
                        person.id,
                        format=fmt,
                        via=via,
                        verified=check.ok,
                        events=len(events),
                    )
                    outgoing = messages(record, person) if messages else []
                    self.store.save(
                        session, dispute, outgoing, wake_at=self._wake(dispute), now=now
                    )
                    return Export(True, f"The record of {dispute.ref}.", content, check)
            except NotFound:
                return Export(False, f"There is no dispute with reference {ref.strip().upper()}.")
            except Conflict:
                continue
        return Export(
            False, "Someone else changed this dispute at the same moment; please try again."
        )

    def export(
        self,
        ref: str,
        person_id: str,
        fmt: str,
        *,
        to_pdf: Callable[[str], bytes] | None = None,
    ) -> Export:
        """The record as Markdown, HTML or PDF (printed by `to_pdf`), recorded as an export."""
        if fmt not in FORMATS:
            return Export(False, f"Unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")
        if fmt == "pdf" and to_pdf is None:
            return Export(False, "PDF export needs a way to print HTML to PDF (Chromium).")

        def render(record: DisputeRecord) -> str | bytes:
            if fmt == "md":
                return render_markdown(record)
            page = render_html(record)
            # Printed inside the unit of work: a failed print records no export.
            return to_pdf(page) if fmt == "pdf" and to_pdf is not None else page

        return self._recorded(ref, person_id, fmt=fmt, via="cli", render=render)

    def send_record(self, ref: str, person_id: str) -> Outcome:
        """Send the record privately, in direct messages, to a person allowed to see it."""
        done = self._recorded(
            ref,
            person_id,
            fmt="md",
            via="chat",
            render=render_markdown,
            messages=lambda record, person: record_messages(record, person.id),
        )
        if not done.ok:
            return Outcome(False, done.text)
        return Outcome(
            True,
            f"I've sent you the record of {ref.strip().upper()} in a direct message. "
            "Please keep it private and place it on the child's or adult's file.",
        )

    # ---- the board report -------------------------------------------------------------------

    def report(self, start: date, end: date) -> BoardReport:
        """The board report for disputes closed from `start` to `end` inclusive (local days)."""
        s = self.service
        p, directory = s.partnership, s.directory
        zone = p.calendar.tz
        since = datetime.combine(start, time(0), zone).astimezone(UTC)
        until = datetime.combine(end + timedelta(days=1), time(0), zone).astimezone(UTC)
        cases = []
        with self.store.unit() as session:
            for ref in db.closed_between(session, p.id, since, until):
                dispute = self.store.load(session, ref)
                events = db.chain(session, ref)
                cases.append(case_from(dispute, events, directory, p.calendar))
        return build_report(
            cases, p.policy, partnership=p.config.name, start=start, end=end, now=s.clock.now()
        )

    @staticmethod
    def render_report(report: BoardReport, fmt: str) -> str:
        """The report as HTML, Markdown or CSV."""
        return {"html": report_html, "md": report_markdown, "csv": report_csv}[fmt](report)

    # ---- retention ------------------------------------------------------------------------------

    def retention(self, *, dry_run: bool, actor: str | None = None) -> list[RetentionItem]:
        """Remove personal details from disputes closed longer ago than the retention period."""
        s = self.service
        p, directory, tz = s.partnership, s.directory, self._tz
        days = p.config.retention_days
        now = s.clock.now()
        with self.store.unit() as session:
            due = db.retention_candidates(session, p.id, now - timedelta(days=days))
        items = []
        for ref, closed_at in due:
            with self.store.unit() as session:
                dispute = self.store.load(session, ref, lock=not dry_run)
                events = db.chain(session, ref)
                check = verify_chain(ref, events, event_hash, tz=tz)
                scrub = scrubber_for(dispute, events, directory)
                plan = plan_redaction(ref, events, event_hash, scrub)
                item = RetentionItem(
                    ref,
                    closed_at,
                    closed_at + timedelta(days=days),
                    len(plan),
                    sorted({f.split("[")[0] for r in plan for f in r.fields}),
                )
                items.append(item)
                if not check.ok:
                    # Redacting a chain that fails would hide how it was altered.
                    item.skipped = (
                        "its record fails verification; investigate with "
                        "`escalation-bot audit verify` first"
                    )
                    continue
                if dry_run:
                    continue
                db.replace_event_data(session, ref, {r.seq: r.data for r in plan})
                redact_dispute(dispute, scrub)
                removed = db.delete_delivered_messages(session, ref)
                dispute.record(
                    REDACTION_EVENT,
                    now,
                    actor,
                    retention_days=days,
                    closed_at=closed_at.isoformat(),
                    events=[r.entry() for r in plan],
                    messages_deleted=removed,
                )
                self.store.save(session, dispute, wake_at=self._wake(dispute), now=now)
                item.done = True
        return items


def describe_retention(item: RetentionItem, tz: str, *, dry_run: bool) -> str:
    """One line about a dispute past its retention period."""
    closed = format_day(item.closed_at.astimezone(ZoneInfo(tz)).date())
    if item.skipped:
        return f"{item.ref} (closed {closed}): NOT done: {item.skipped}."
    labels = [label for key, label in FIELD_NAMES if key in item.fields]
    labels += [f.replace("_", " ") for f in item.fields if f not in dict(FIELD_NAMES)]
    verb = "would remove" if dry_run else "removed"
    if not labels:
        done = "would be marked" if dry_run else "marked"
        return f"{item.ref} (closed {closed}): no personal details left to remove; {done} as done."
    return (
        f"{item.ref} (closed {closed}): {verb} {', '.join(labels)} from {item.events} events "
        "(names taken out of learning points and reasons for delay); statistics kept."
    )


FIELD_NAMES = (
    ("case_ref", "the case reference"),
    ("decision", "the decision disputed"),
    ("reasons", "the reasons"),
    ("outcome_sought", "the outcome sought"),
    ("text", "note texts"),
    ("with_whom", "who discussions were with"),
    ("reason", "reasons given"),
    ("outcome", "outcomes"),
    ("actions", "agreed action descriptions"),
)
