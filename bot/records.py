"""A dispute's record: hash-chain verification, redaction for retention, the chronology, and
its renderings (Markdown, HTML, and facts for a chat message).

Pure domain: the standard library and the other domain modules only. The event hash function
is passed in by the caller (`store.repository.event_hash`), so the domain never imports the
store and there is one definition of the hash.

Retention and the hash chain
----------------------------
Each event's stored `hash` covers its canonical content and the previous event's hash. Removing
personal details after the retention period changes that content, so the stored hash can no
longer be recomputed from what is left. Re-hashing the chain was rejected: a rewritten chain
is indistinguishable from a forged one, and it would destroy the evidence the chain exists to
keep. Instead:

- a redacted event keeps its original `prev_hash` and `hash` columns, so the links between
  events (and every later event) still verify exactly as before;
- the redaction is itself an event, `PersonalDetailsRemoved`, appended to the same chain. For
  each event it redacted it records the original hash and the hash of the redacted content
  (the same hash function over the same envelope, with the redacted data);
- verification accepts an event whose content does not match its hash only if a
  `PersonalDetailsRemoved` event that itself verifies lists that event's original hash and
  the redacted content matches the recorded redacted hash.

So a redacted event is still tamper-evident: editing it afterwards breaks the redacted hash,
editing the redaction event breaks its own hash, and deleting the redaction event leaves the
redacted events unexplained (reported as edited). The redaction only happens to a chain that
verifies, so it never launders earlier tampering.

What a hash chain alone cannot show: events removed from the very end of a chain, or a chain
rewritten from some point on with fresh hashes, by someone with write access to the database.
`check_heads` closes that gap against heads saved elsewhere earlier (`audit verify --heads`).
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.directory import Directory
from bot.disputes import Dispute
from bot.messages import ActionId, Button, Message, Recipient, plain
from bot.workdays import format_day, format_when

GENESIS = "0" * 64
REDACTION_EVENT = "PersonalDetailsRemoved"
EXPORT_EVENT = "RecordExported"
REMOVED = "[removed under the retention policy]"
NAME_REMOVED = "[name removed]"
CASE_REF_REMOVED = "[case reference removed]"

Hasher = Callable[[str, str, int, str, datetime, str | None, dict[str, Any]], str]

EDITED = "edited"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: content, place in the chain, and the database row it came from."""

    seq: int
    type: str
    at: datetime
    actor: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str
    row_id: int = 0


# ---- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One way a dispute's record is not as it was written."""

    ref: str
    seq: int
    kind: str  # edited, deleted, inserted, reordered
    text: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.text}"


@dataclass(frozen=True)
class ChainCheck:
    """The verification of one dispute's chain."""

    ref: str
    events: int
    redacted: int
    findings: tuple[Finding, ...]
    # The genuine hash at each original position (1, 2, ...); "" where an event is missing.
    chain: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """No event edited, deleted, inserted or reordered."""
        return not self.findings

    @property
    def head(self) -> tuple[int, str]:
        """The last event's number and hash, to keep elsewhere (see `check_heads`)."""
        return len(self.chain), (self.chain[-1] if self.chain else GENESIS)

    def summary(self) -> str:
        """One sentence for the record and the command line."""
        if self.ok:
            redacted = (
                f"; {self.redacted} redacted under the retention policy, each matching the "
                "content hash recorded when it was redacted"
                if self.redacted
                else ""
            )
            plural = "event" if self.events == 1 else "events"
            return (
                f"Verified: all {self.events} {plural} match their hashes and are chained in "
                f"order{redacted}."
            )
        count = len(self.findings)
        return f"FAILED: {count} problem{'s' if count != 1 else ''} found; the record has been altered."


def _describe(event: RecordedEvent, tz: ZoneInfo) -> str:
    local = event.at.astimezone(tz)
    return f"{event.type}, {format_day(local.date())} {local:%H:%M}"


def verify_chain(
    ref: str,
    events: Sequence[RecordedEvent],
    hasher: Hasher,
    *,
    tz: str = "Europe/London",
) -> ChainCheck:
    """Check one dispute's events, naming each edited, deleted, inserted or reordered event."""
    zone = ZoneInfo(tz)
    rows = sorted(events, key=lambda e: (e.seq, e.row_id))
    if not rows:
        finding = Finding(ref, 0, DELETED, "has no events at all: its whole record was deleted")
        return ChainCheck(ref, 0, 0, (finding,))

    def digest(r: RecordedEvent, seq: int) -> str:
        return hasher(r.prev_hash, ref, seq, r.type, r.at, r.actor, r.data)

    # 1. Where each event was originally written: the number its content hashes under.
    orig: list[int | None] = [r.seq if digest(r, r.seq) == r.hash else None for r in rows]
    records: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        if r.type == REDACTION_EVENT and orig[i] == r.seq:
            for item in r.data.get("events", []):
                if isinstance(item, dict) and "hash" in item:
                    records[str(item["hash"])] = item
    redacted: set[int] = set()
    for i, r in enumerate(rows):
        item = records.get(r.hash)
        if (
            orig[i] is None
            and item is not None
            and digest(r, int(item["seq"])) == item.get("redacted_hash")
        ):
            orig[i] = int(item["seq"])
            redacted.add(i)
    top = max(r.seq for r in rows) + len(rows)
    for i, r in enumerate(rows):
        if orig[i] is None:
            # Renumbered events still hash correctly under the number they were written with.
            orig[i] = next(
                (s for s in range(1, top + 1) if s != r.seq and digest(r, s) == r.hash), None
            )

    # 2. The genuine event at each original place; extra claimants were inserted.
    claims: dict[int, list[int]] = defaultdict(list)
    for i, o in enumerate(orig):
        if o is not None:
            claims[o].append(i)
    pointed_at = {r.prev_hash for r in rows}
    genuine: dict[int, int] = {}
    inserted: set[int] = set()
    for pos, idxs in claims.items():
        # The original is the one the next event points back to, else the one stored first.
        ranked = sorted(idxs, key=lambda j: (rows[j].hash not in pointed_at, rows[j].row_id))
        genuine[pos] = ranked[0]
        inserted.update(ranked[1:])
    edited: set[int] = set()
    for i, o in enumerate(orig):
        if o is None:
            # Content matching no hash: an edit where the place is its own, else an insertion.
            (inserted if rows[i].seq in genuine else edited).add(i)

    found: list[Finding] = []
    for i in sorted(edited):
        r = rows[i]
        last = i == len(rows) - 1 and r.hash not in pointed_at
        how = " (or it was added by hand)" if last else ""
        found.append(
            Finding(
                ref,
                r.seq,
                EDITED,
                f"event #{r.seq} ({_describe(r, zone)}) was edited{how}: its content no longer "
                "matches its hash",
            )
        )
    for i in sorted(inserted):
        r = rows[i]
        found.append(
            Finding(
                ref,
                r.seq,
                INSERTED,
                f"event #{r.seq} ({_describe(r, zone)}) was inserted: it is not part of the "
                "original record",
            )
        )

    # 3. Missing places: deleted events.
    occupied = set(genuine) | {rows[i].seq for i in edited}
    for pos in range(1, max(occupied, default=0) + 1):
        if pos not in occupied:
            found.append(
                Finding(
                    ref,
                    pos,
                    DELETED,
                    f"event #{pos} is missing: it was deleted (the record goes from "
                    f"#{pos - 1} to #{pos + 1})"
                    if pos > 1
                    else "event #1 is missing: it was deleted",
                )
            )

    # 4. Events away from the place they were written: reordered or renumbered.
    moved = sorted(
        (rows[i].seq, o, i) for o, i in genuine.items() if rows[i].seq != o and i not in inserted
    )
    run: list[tuple[int, int, int]] = []

    def flush() -> None:
        if not run:
            return
        if len(run) == 1:
            seq, o, i = run[0]
            found.append(
                Finding(
                    ref,
                    seq,
                    REORDERED,
                    f"event #{seq} ({_describe(rows[i], zone)}) was recorded as #{o}: the "
                    "events were reordered",
                )
            )
        else:
            (first, o1, _), (last, o2, _) = run[0], run[-1]
            found.append(
                Finding(
                    ref,
                    first,
                    REORDERED,
                    f"events #{first} to #{last} were renumbered: they were recorded as "
                    f"#{o1} to #{o2}",
                )
            )
        run.clear()

    for item in moved:
        if run and (item[0] != run[-1][0] + 1 or item[0] - item[1] != run[-1][0] - run[-1][1]):
            flush()
        run.append(item)
    flush()

    # 5. Links: an event in place whose predecessor's hash is not the one it points back to.
    reported = {f.seq for f in found}
    for pos, i in sorted(genuine.items()):
        r = rows[i]
        if r.seq != pos or i in inserted:
            continue
        if pos == 1:
            expected: str | None = GENESIS
        elif pos - 1 in genuine:
            expected = rows[genuine[pos - 1]].hash
        else:
            continue  # the predecessor is missing or edited: already reported
        if r.prev_hash == expected:
            continue
        if pos == 1:
            found.append(
                Finding(ref, 1, EDITED, "event #1 was edited: it does not start the chain")
            )
            continue
        before = rows[genuine[pos - 1]]
        if before.seq in reported:
            continue
        found.append(
            Finding(
                ref,
                before.seq,
                EDITED,
                f"event #{before.seq} ({_describe(before, zone)}) was edited and its hash "
                f"recomputed: event #{r.seq} still points back to the original",
            )
        )

    length = max(genuine) if genuine else 0
    chain = tuple(rows[genuine[p]].hash if p in genuine else "" for p in range(1, length + 1))
    found.sort(key=lambda f: (f.seq, f.kind))
    return ChainCheck(ref, len(rows), len(redacted), tuple(found), chain)


def check_heads(checks: Iterable[ChainCheck], saved: dict[str, Any]) -> list[Finding]:
    """Findings for chains that no longer contain the head saved earlier (cut back or rewritten)."""
    by_ref = {c.ref: c for c in checks}
    out: list[Finding] = []
    for ref, head in sorted(saved.items()):
        seq, digest = int(head["seq"]), str(head["hash"])
        check = by_ref.get(ref)
        if check is None:
            out.append(
                Finding(
                    ref, seq, DELETED, "the whole dispute was deleted since the heads were saved"
                )
            )
        elif seq > len(check.chain) or check.chain[seq - 1] != digest:
            out.append(
                Finding(
                    ref,
                    seq,
                    DELETED,
                    f"event #{seq}, the last when the heads were saved, is no longer in the "
                    "record as it was: events were deleted from the end, or the chain was "
                    "rewritten",
                )
            )
    return out


def heads_of(checks: Iterable[ChainCheck]) -> dict[str, dict[str, Any]]:
    """Each chain's head, to save for `check_heads` next time."""
    return {c.ref: {"seq": c.head[0], "hash": c.head[1]} for c in checks if c.chain}


# ---- redaction for retention ----------------------------------------------------------------

# Free text removed outright, by event type. Learning points and delay reasons are the board's
# action log: they are kept with known names and the case reference taken out.
_REMOVE: dict[str, tuple[str, ...]] = {
    "DisputeOpened": ("case_ref", "decision", "reasons", "outcome_sought"),
    "NoteAdded": ("text", "with_whom"),
    "StageEscalated": ("reason",),
    "ExceptionalRouteTaken": ("reason",),
    "ResolutionProposed": ("outcome",),
    "ResolutionRejected": ("reason",),
    "DisputeWithdrawn": ("reason",),
    "DisputeClosed": ("reason",),
    "DisputeReopened": ("reason",),
}
_SCRUB: dict[str, tuple[str, ...]] = {
    "DelayReasonRecorded": ("reason",),
    "LearningRecorded": ("text",),
}


@dataclass(frozen=True)
class Redaction:
    """The new content of one event, and what the redaction event records about it."""

    seq: int
    data: dict[str, Any]
    fields: tuple[str, ...]
    original_hash: str
    redacted_hash: str

    def entry(self) -> dict[str, Any]:
        """What the PersonalDetailsRemoved event keeps about this event."""
        return {
            "seq": self.seq,
            "hash": self.original_hash,
            "redacted_hash": self.redacted_hash,
            "fields": list(self.fields),
        }


class NameScrubber:
    """Takes known names and the case reference out of free text."""

    def __init__(self, names: Iterable[str], case_refs: Iterable[str] = ()) -> None:
        self._names = _pattern(names)
        self._refs = _pattern(case_refs)

    def __call__(self, text: str) -> str:
        if self._refs is not None:
            text = self._refs.sub(CASE_REF_REMOVED, text)
        if self._names is not None:
            text = self._names.sub(NAME_REMOVED, text)
        return text


def _pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    cleaned = sorted({w.strip() for w in words if w and len(w.strip()) >= 3}, key=len, reverse=True)
    if not cleaned:
        return None
    return re.compile(
        r"(?<!\w)(" + "|".join(re.escape(w) for w in cleaned) + r")(?!\w)", re.IGNORECASE
    )


def scrubber_for(
    dispute: Dispute, events: Iterable[RecordedEvent], directory: Directory
) -> NameScrubber:
    """A scrubber for one dispute: everyone in the directory, who notes were with, its case ref."""
    names = [p.name for p in directory]
    names += [str(e.data["with_whom"]) for e in events if e.data.get("with_whom")]
    refs = [dispute.details.case_ref]
    refs += [str(e.data["case_ref"]) for e in events if e.data.get("case_ref")]
    return NameScrubber(names, [r for r in refs if r and r != REMOVED])


def redact_event(event: RecordedEvent, scrub: NameScrubber) -> tuple[dict[str, Any], list[str]]:
    """The event's data with personal details removed, and which fields changed."""
    data = dict(event.data)
    changed: list[str] = []
    for key in _REMOVE.get(event.type, ()):
        if event.type == "StageEscalated" and data.get("automatic"):
            continue  # the bot's own words, naming no one
        if data.get(key) not in (None, "", REMOVED):
            data[key] = REMOVED
            changed.append(key)
    for key in _SCRUB.get(event.type, ()):
        value = data.get(key)
        if isinstance(value, str) and (cleaned := scrub(value)) != value:
            data[key] = cleaned
            changed.append(key)
    if event.type == "ResolutionProposed" and isinstance(data.get("actions"), list):
        actions = []
        for n, action in enumerate(data["actions"]):
            if isinstance(action, dict) and action.get("description") not in (None, REMOVED):
                action = {**action, "description": REMOVED}
                changed.append(f"actions[{n}].description")
            actions.append(action)
        data["actions"] = actions
    return data, changed


def plan_redaction(
    ref: str,
    events: Sequence[RecordedEvent],
    hasher: Hasher,
    scrub: NameScrubber,
) -> list[Redaction]:
    """What to change in each event that holds personal details (events already verified)."""
    out = []
    for event in sorted(events, key=lambda e: e.seq):
        data, changed = redact_event(event, scrub)
        if not changed:
            continue
        redacted_hash = hasher(
            event.prev_hash, ref, event.seq, event.type, event.at, event.actor, data
        )
        out.append(Redaction(event.seq, data, tuple(changed), event.hash, redacted_hash))
    return out


def redact_dispute(dispute: Dispute, scrub: NameScrubber) -> None:
    """Remove the personal details from a dispute's current state; its statistics stay."""
    d = dispute.details
    d.case_ref = REMOVED
    d.decision = REMOVED
    d.reasons = REMOVED
    d.outcome_sought = REMOVED
    if dispute.resolution is not None:
        r = dispute.resolution
        r.outcome = REMOVED
        if r.reason:
            r.reason = REMOVED
        for action in r.actions:
            action.description = REMOVED
    for item in dispute.delay_reasons:
        item["reason"] = scrub(str(item.get("reason", "")))
    for item in dispute.learning:
        item["text"] = scrub(str(item.get("text", "")))
    dispute.flags.add("personal_details_removed")


# ---- the chronology -------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of the chronology: when, what, who, and what they wrote."""

    seq: int
    at: datetime
    kind: str  # discussion, decision, escalation, outcome, deadline, record
    title: str
    who: str
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DeadlineLine:
    """A step's deadline and whether it was met."""

    stage: int
    title: str
    due: datetime
    status: str  # met, missed, open, overdue, not needed
    done_at: datetime | None
    local_target: bool


@dataclass(frozen=True)
class ActionLine:
    """An agreed action, its owner and review date."""

    number: int
    description: str
    owner: str
    review: date
    status: str


@dataclass(frozen=True)
class DisputeRecord:
    """Everything the record of one dispute shows, ready to render."""

    ref: str
    partnership: str
    policy_name: str
    policy_version: str
    policy_fingerprint: str
    tz: str
    status: str
    stage: str
    raising_agency: str
    receiving_agency: str
    raised_by: str
    receiving_person: str
    category: str
    case_ref: str
    decision: str
    reasons: str
    outcome_sought: str
    disagreement_date: date
    immediate_risk: bool
    opened_at: datetime
    closed_at: datetime | None
    entries: tuple[Entry, ...]
    outcome: str | None
    outcome_status: str | None
    actions: tuple[ActionLine, ...]
    deadlines: tuple[DeadlineLine, ...]
    overall_due: datetime | None
    overall_breached: bool
    check: ChainCheck
    redacted: bool
    prepared_at: datetime
    prepared_by: str
    export_seq: int | None = None

    def when(self, at: datetime) -> str:
        """'Wed 2 Dec, 17:00' local; the year shown when it is not the year the dispute opened."""
        return format_when(at, self.tz, now=self.opened_at)

    def full(self, at: datetime) -> str:
        """'Wed 2 Dec 2026, 17:00' local."""
        local = at.astimezone(ZoneInfo(self.tz))
        return f"{format_day(local.date())}, {local:%H:%M}"

    @property
    def year(self) -> int:
        """The year dates without a year are in."""
        return self.opened_at.astimezone(ZoneInfo(self.tz)).year


class _Names:
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def person(self, person_id: str | None) -> str:
        if person_id is None:
            return "the bot"
        person = self.directory.get(person_id)
        if person is None:
            return person_id
        return f"{person.name} ({self.directory.agency_name(person.agency)})"

    def agency(self, agency_id: str) -> str:
        return self.directory.agency_name(agency_id)


def build_record(
    dispute: Dispute,
    events: Sequence[RecordedEvent],
    check: ChainCheck,
    directory: Directory,
    *,
    partnership: str,
    prepared_by: str | None,
    now: datetime,
    export_seq: int | None = None,
) -> DisputeRecord:
    """The record of a dispute from its events and current state."""
    names = _Names(directory)
    policy = dispute.policy
    tz = policy.timezone
    d = dispute.details
    entries = tuple(
        entry
        for e in sorted(events, key=lambda e: e.seq)
        if (entry := _entry(e, dispute, names, tz)) is not None
    )
    deadlines = []
    for s in sorted(dispute.steps, key=lambda s: (s.stage, s.started_at, s.due_at)):
        try:
            title = dispute.step_def(s).title
        except (StopIteration, IndexError):
            title = s.step_id
        deadlines.append(
            DeadlineLine(
                s.stage, title, s.due_at, _deadline_status(s, now), s.completed_at, s.local_target
            )
        )
    resolution = dispute.resolution
    actions = tuple(
        ActionLine(a.id, a.description, names.person(a.owner), a.review_date, a.status)
        for a in (resolution.actions if resolution else [])
    )
    opened = next((e for e in events if e.type == "DisputeOpened"), None)
    version = str(opened.data.get("policy_version")) if opened else policy.version
    return DisputeRecord(
        ref=dispute.ref,
        partnership=partnership,
        policy_name=policy.name,
        policy_version=version,
        policy_fingerprint=policy.fingerprint,
        tz=tz,
        status=dispute.status.label,
        stage=f"{dispute.stage} of {policy.last_stage}: {dispute.current_stage.name}",
        raising_agency=names.agency(d.raising_agency),
        receiving_agency=names.agency(d.receiving_agency),
        raised_by=names.person(d.raised_by),
        receiving_person=names.person(d.receiving_person) if d.receiving_person else "not named",
        category=policy.category_label(d.category),
        case_ref=d.case_ref,
        decision=d.decision,
        reasons=d.reasons,
        outcome_sought=d.outcome_sought,
        disagreement_date=d.disagreement_date,
        immediate_risk=d.immediate_risk,
        opened_at=dispute.opened_at,
        closed_at=dispute.closed_at,
        entries=entries,
        outcome=resolution.outcome if resolution else None,
        outcome_status=resolution.status if resolution else None,
        actions=actions,
        deadlines=tuple(deadlines),
        overall_due=dispute.overall_due,
        overall_breached="overall_target_breached" in dispute.flags,
        check=check,
        redacted="personal_details_removed" in dispute.flags,
        prepared_at=now,
        prepared_by=names.person(prepared_by) if prepared_by else "the bot",
        export_seq=export_seq,
    )


def _deadline_status(step: Any, now: datetime) -> str:
    if step.breached_at is not None or (
        step.completed_at is not None and step.completed_at > step.due_at
    ):
        return "missed"
    if step.completed_at is not None:
        return "met"
    if step.is_open:
        return "overdue" if step.due_at <= now else "open"
    return "not needed"


def _day(value: Any) -> str:
    try:
        return format_day(date.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def _stage_name(dispute: Dispute, number: Any) -> str:
    try:
        return f"stage {int(number)} ({dispute.policy.stage(int(number)).name})"
    except (TypeError, ValueError, IndexError):
        return f"stage {number}"


def _step_title(dispute: Dispute, data: dict[str, Any]) -> str:
    try:
        stage = dispute.policy.stage(int(data["stage"]))
        return next(s.title for s in stage.steps if s.id == data["step"])
    except (KeyError, TypeError, ValueError, IndexError, StopIteration):
        return str(data.get("step", "a step"))


def _entry(e: RecordedEvent, dispute: Dispute, names: _Names, tz: str) -> Entry | None:
    data = e.data
    who = names.person(e.actor)
    t = e.type

    def when(value: Any) -> str:
        try:
            return format_when(datetime.fromisoformat(str(value)), tz, now=dispute.opened_at)
        except ValueError:
            return str(value)

    def make(kind: str, title: str, *details: tuple[str, Any]) -> Entry:
        kept = tuple((label, str(v)) for label, v in details if v not in (None, ""))
        return Entry(e.seq, e.at, kind, title, who, kept)

    if t == "DisputeOpened":
        return make(
            "decision",
            f"Disagreement logged at stage 1 under {data.get('policy_version', 'the policy')}",
        )
    if t == "ImmediateRiskFlagged":
        return make("decision", "Immediate risk of significant harm reported")
    if t == "Acknowledged":
        side = data.get("side")
        agency = names.agency(dispute.agency_of(side)) if side in ("raising", "receiving") else ""
        return make(
            "discussion", f"Acknowledged for {agency or 'a party'} at stage {data.get('stage')}"
        )
    if t == "NoteAdded":
        return make(
            "discussion",
            "Discussion recorded",
            ("With", data.get("with_whom")),
            ("Held", when(data["held_at"]) if data.get("held_at") else None),
            ("Note", data.get("text")),
        )
    if t == "StageEscalated":
        how = "automatically, because a deadline passed" if data.get("automatic") else ""
        title = f"Escalated from stage {data.get('from_stage')} to {_stage_name(dispute, data.get('to_stage'))}"
        return make("escalation", f"{title} {how}".strip(), ("Reason", data.get("reason")))
    if t == "ExceptionalRouteTaken":
        return make(
            "escalation", "Referred by the exceptional route", ("Reason", data.get("reason"))
        )
    if t == "ResolutionProposed":
        actions = [
            f"{a.get('description')} (owner {names.person(a.get('owner'))}, review {_day(a.get('review_date'))})"
            for a in data.get("actions", [])
            if isinstance(a, dict)
        ]
        return make(
            "outcome",
            f"Resolution proposed at stage {data.get('stage')}",
            ("Proposed outcome", data.get("outcome")),
            *((f"Action {n}", text) for n, text in enumerate(actions, start=1)),
        )
    if t == "ResolutionConfirmed":
        return make(
            "outcome",
            f"Resolution confirmed at stage {data.get('stage')}: the agreed outcome in writing",
        )
    if t == "ResolutionRejected":
        return make("decision", "Proposed resolution rejected", ("Reason", data.get("reason")))
    if t == "StepCompleted":
        on_time = "on time" if data.get("on_time") else "late"
        return make(
            "deadline",
            f"Deadline {'met' if data.get('on_time') else 'missed'}: {_step_title(dispute, data)}",
            ("Due", when(data["due"]) if data.get("due") else None),
            ("Done", on_time),
        )
    if t == "DeadlineBreached":
        return make(
            "deadline",
            f"Deadline missed: {_step_title(dispute, data)}",
            ("Due", when(data["due"]) if data.get("due") else None),
        )
    if t == "ReminderSent":
        return make(
            "deadline",
            f"Reminder sent: {_step_title(dispute, data)}",
            ("Due", when(data.get("due"))),
        )
    if t == "StepDueToday":
        return make(
            "deadline", f"Due today: {_step_title(dispute, data)}", ("Due", when(data.get("due")))
        )
    if t == "OverallTargetBreached":
        return make(
            "deadline",
            "The policy's overall target was passed",
            ("Target", when(data["due"]) if data.get("due") else None),
        )
    if t == "AutoEscalationSkipped":
        return make("escalation", "Overdue at the final stage: nothing further to escalate to")
    if t == "DelayReasonRecorded":
        return make(
            "decision",
            "Reason for delay recorded",
            ("Reason", data.get("reason")),
            (
                "Child's or adult's safety confirmed",
                "yes" if data.get("safety_confirmed") else "no",
            ),
        )
    if t == "LearningRecorded":
        return make(
            "outcome", "Learning point recorded for the board", ("Learning", data.get("text"))
        )
    if t == "ActionReviewDue":
        return make("outcome", "Check-back: agreed actions due for review")
    if t == "ActionsImplemented":
        return make("outcome", "Agreed actions confirmed as implemented")
    if t == "DisputeReopened":
        return make(
            "decision",
            "Reopened: the agreed actions were not implemented",
            ("Reason", data.get("reason")),
        )
    if t == "DisputeWithdrawn":
        return make("decision", "Withdrawn by the raising agency", ("Reason", data.get("reason")))
    if t == "DisputeClosed":
        return make("decision", "Closed by the partnership", ("Reason", data.get("reason")))
    if t == "ActionRefused":
        return make(
            "record",
            f"Refused permission to {str(data.get('action', 'act')).replace('_', ' ')}",
            ("Why", data.get("reason")),
        )
    if t == EXPORT_EVENT:
        how = (
            "sent in chat"
            if data.get("via") == "chat"
            else f"exported as {data.get('format', '?')}"
        )
        return make("record", f"Record {how}")
    if t == REDACTION_EVENT:
        return make(
            "record",
            f"Personal details removed after the retention period ({data.get('retention_days')} days after closure)",
        )
    return make("record", re.sub(r"(?<!^)(?=[A-Z])", " ", t).capitalize())


# ---- rendering ----------------------------------------------------------------------------

_MD_INLINE = re.compile(r"([\\`*_\[\]<>|~&])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))")


def _md_line_start(match: re.Match[str]) -> str:
    lead, mark = match.group(1), match.group(2)
    # "1." starts a list: the full stop is what is escaped; "#", ">", "-"... are escaped themselves.
    return f"{lead}{mark}\\" if mark[0].isdigit() else f"{lead}\\{mark}"


def md_escape(text: str) -> str:
    """User text safe in Markdown: shown literally, never as markup, HTML or a link."""
    out = []
    for line in plain(text).splitlines() or [""]:
        line = _MD_INLINE.sub(r"\\\1", line)
        line = _MD_LINE_START.sub(_md_line_start, line)
        out.append(line)
    return "\n".join(out)


def _md_block(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in md_escape(text).split("\n"))


def _details_rows(record: DisputeRecord) -> list[tuple[str, str]]:
    return [
        ("Reference", record.ref),
        ("Partnership", record.partnership),
        (
            "Agencies",
            f"{record.raising_agency} (raising) and {record.receiving_agency} (receiving)",
        ),
        ("Raised by", record.raised_by),
        ("With", record.receiving_person),
        ("Category", record.category),
        ("Case reference", record.case_ref),
        ("Date of disagreement", format_day(record.disagreement_date)),
        ("Immediate risk reported", "yes" if record.immediate_risk else "no"),
        ("Opened", record.full(record.opened_at)),
        ("Closed", record.full(record.closed_at) if record.closed_at else "not closed"),
        ("State", f"{record.status}, stage {record.stage}"),
        (
            "Policy",
            f"{record.policy_name}, {record.policy_version} (fingerprint {record.policy_fingerprint})",
        ),
    ]


def _deadline_text(record: DisputeRecord, line: DeadlineLine) -> str:
    due = record.when(line.due) + (" (local target)" if line.local_target else "")
    done = f", done {record.when(line.done_at)}" if line.done_at else ""
    return f"{line.status}: due {due}{done}"


def render_markdown(record: DisputeRecord) -> str:
    """The record as Markdown, for the child's or adult's file."""
    out = [f"# Record of professional disagreement {record.ref}", ""]
    out.append(
        f"Prepared {record.full(record.prepared_at)} for {md_escape(record.prepared_by)}. "
        f"Times are {record.tz} local time; dates without a year are in {record.year}. "
        "Confidential: for the parties and the individual's file only."
    )
    out.append("")
    if record.redacted:
        out += ["**Personal details have been removed under the retention policy.**", ""]
    out += ["## Details", "", "| | |", "|---|---|"]
    out += [f"| {label} | {md_escape(value)} |" for label, value in _details_rows(record)]
    out += ["", "### The decision disputed", "", _md_block(record.decision), ""]
    out += ["### Reasons", "", _md_block(record.reasons), ""]
    out += ["### Outcome sought", "", _md_block(record.outcome_sought), ""]
    out += ["## Chronology", ""]
    for entry in record.entries:
        out.append(
            f"- **{record.when(entry.at)}** (#{entry.seq}) {md_escape(entry.title)} - {md_escape(entry.who)}"
        )
        for label, value in entry.details:
            if "\n" in value or len(value) > 80:
                out.append(f"  - {md_escape(label)}:")
                out += [f"    {line}" for line in _md_block(value).split("\n")]
            else:
                out.append(f"  - {md_escape(label)}: {md_escape(value)}")
    out += ["", "## Agreed outcome", ""]
    if record.outcome is None:
        out.append("No outcome has been agreed.")
    else:
        out += [f"Status: {md_escape(record.outcome_status or '')}", "", _md_block(record.outcome)]
        if record.actions:
            out += ["", "| Action | Owner | Review | Status |", "|---|---|---|---|"]
            out += [
                f"| {a.number}. {md_escape(a.description)} | {md_escape(a.owner)} | {format_day(a.review)} | {a.status} |"
                for a in record.actions
            ]
    out += ["", "## Deadlines", "", "| Stage | Step | Deadline |", "|---|---|---|"]
    out += [
        f"| {line.stage} | {md_escape(line.title)} | {_deadline_text(record, line)} |"
        for line in record.deadlines
    ]
    if record.overall_due is not None:
        passed = "passed" if record.overall_breached else "not passed"
        out += ["", f"Overall target: {record.when(record.overall_due)} ({passed})."]
    out += ["", "## Verification", "", record.check.summary()]
    out += [f"- {md_escape(f.text)}" for f in record.check.findings]
    if record.export_seq is not None:
        out += ["", f"This export is itself recorded on the dispute as event #{record.export_seq}."]
    return "\n".join(out) + "\n"


CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_RECORD_CSS = """
body { font-family: Arial, Helvetica, sans-serif; color: #0b0c0c; margin: 2rem; max-width: 60rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 2px solid #1d70b8; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #b1b4b6; }
th { width: 14rem; } .user { white-space: pre-wrap; background: #f3f2f1; padding: .4rem .6rem; margin: .2rem 0; }
ol.chronology { padding-left: 1.2rem; } ol.chronology li { margin-bottom: .8rem; }
.when { font-weight: bold; } .kind { color: #505a5f; font-size: .85rem; }
.ok { color: #00703c; font-weight: bold; } .failed { color: #d4351c; font-weight: bold; }
.missed, .overdue { color: #d4351c; } .met { color: #00703c; }
.notice { border-left: 5px solid #1d70b8; padding: .5rem 1rem; background: #f3f2f1; }
@media print { body { margin: 0; } h2 { break-after: avoid; } li { break-inside: avoid; } }
"""


def _h(text: Any) -> str:
    return html.escape(plain(str(text)), quote=True)


def render_html(record: DisputeRecord) -> str:
    """The record as a self-contained HTML page (no scripts; all user text escaped)."""
    e = _h
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>Record of {e(record.ref)}</title><style>{_RECORD_CSS}</style></head><body>",
        f"<h1>Record of professional disagreement {e(record.ref)}</h1>",
        f'<p class="notice">Prepared {e(record.full(record.prepared_at))} for {e(record.prepared_by)}. '
        f"Times are {e(record.tz)} local time; dates without a year are in {record.year}. "
        "Confidential: for the parties and the individual's file only.</p>",
    ]
    if record.redacted:
        parts.append(
            '<p class="notice"><strong>Personal details have been removed under the retention policy.</strong></p>'
        )
    parts.append("<h2>Details</h2><table>")
    parts += [
        f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>" for label, value in _details_rows(record)
    ]
    parts.append("</table>")
    for title, text in (
        ("The decision disputed", record.decision),
        ("Reasons", record.reasons),
        ("Outcome sought", record.outcome_sought),
    ):
        parts.append(f'<h3>{title}</h3><div class="user">{e(text)}</div>')
    parts.append('<h2>Chronology</h2><ol class="chronology">')
    for entry in record.entries:
        parts.append(
            f'<li value="{entry.seq}"><span class="when">{e(record.when(entry.at))}</span> '
            f'{e(entry.title)} <span class="kind">- {e(entry.who)}</span>'
        )
        for label, value in entry.details:
            if "\n" in value or len(value) > 80:
                parts.append(f'<div><em>{e(label)}</em><div class="user">{e(value)}</div></div>')
            else:
                parts.append(f"<div><em>{e(label)}:</em> {e(value)}</div>")
        parts.append("</li>")
    parts.append("</ol><h2>Agreed outcome</h2>")
    if record.outcome is None:
        parts.append("<p>No outcome has been agreed.</p>")
    else:
        parts.append(
            f'<p>Status: {e(record.outcome_status or "")}</p><div class="user">{e(record.outcome)}</div>'
        )
        if record.actions:
            parts.append(
                "<table><tr><th>Action</th><th>Owner</th><th>Review</th><th>Status</th></tr>"
            )
            parts += [
                f"<tr><td>{a.number}. {e(a.description)}</td><td>{e(a.owner)}</td>"
                f"<td>{e(format_day(a.review))}</td><td>{e(a.status)}</td></tr>"
                for a in record.actions
            ]
            parts.append("</table>")
    parts.append("<h2>Deadlines</h2><table><tr><th>Stage</th><th>Step</th><th>Deadline</th></tr>")
    parts += [
        f'<tr><td>{line.stage}</td><td>{e(line.title)}</td><td class="{line.status.replace(" ", "-")}">'
        f"{e(_deadline_text(record, line))}</td></tr>"
        for line in record.deadlines
    ]
    parts.append("</table>")
    if record.overall_due is not None:
        passed = "passed" if record.overall_breached else "not passed"
        parts.append(f"<p>Overall target: {e(record.when(record.overall_due))} ({passed}).</p>")
    css = "ok" if record.check.ok else "failed"
    parts.append(f'<h2>Verification</h2><p class="{css}">{e(record.check.summary())}</p>')
    if record.check.findings:
        parts.append(
            "<ul>" + "".join(f"<li>{e(f.text)}</li>" for f in record.check.findings) + "</ul>"
        )
    if record.export_seq is not None:
        parts.append(
            f"<p>This export is itself recorded on the dispute as event #{record.export_seq}.</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---- in chat ----------------------------------------------------------------------------

FACT_LIMIT = 2000  # characters in one fact's value
FACTS_PER_MESSAGE = 20
MESSAGE_LIMIT = 12000  # characters of facts in one message: inside Slack's and Teams' limits


def record_facts(record: DisputeRecord) -> list[tuple[str, str]]:
    """The record as label/value facts for a chat message (plain text; adapters escape it)."""
    facts = [(label, value) for label, value in _details_rows(record)]
    facts += [
        ("Decision disputed", record.decision),
        ("Reasons", record.reasons),
        ("Outcome sought", record.outcome_sought),
    ]
    for entry in record.entries:
        lines = [f"{entry.title} - {entry.who}"]
        lines += [f"{label}: {value}" for label, value in entry.details]
        facts.append((f"{record.when(entry.at)} (#{entry.seq})", "\n".join(lines)))
    if record.outcome is not None:
        facts.append((f"Agreed outcome ({record.outcome_status})", record.outcome))
        facts += [
            (
                f"Action {a.number}",
                f"{a.description} - {a.owner}, review {format_day(a.review)}, {a.status}",
            )
            for a in record.actions
        ]
    facts += [
        (f"Deadline, stage {line.stage}", f"{line.title} - {_deadline_text(record, line)}")
        for line in record.deadlines
    ]
    facts.append(("Verification", record.check.summary()))
    return facts


def _split_fact(label: str, value: str) -> list[tuple[str, str]]:
    if len(value) <= FACT_LIMIT:
        return [(label, value)]
    pieces = [value[i : i + FACT_LIMIT] for i in range(0, len(value), FACT_LIMIT)]
    return [(label if n == 0 else f"{label} (continued)", piece) for n, piece in enumerate(pieces)]


def record_messages(record: DisputeRecord, person_id: str) -> list[Message]:
    """The record as direct messages to one person, each within the platforms' limits."""
    facts = [piece for label, value in record_facts(record) for piece in _split_fact(label, value)]
    batches: list[list[tuple[str, str]]] = [[]]
    size = 0
    for fact in facts:
        length = len(fact[0]) + len(fact[1])
        if batches[-1] and (len(batches[-1]) >= FACTS_PER_MESSAGE or size + length > MESSAGE_LIMIT):
            batches.append([])
            size = 0
        batches[-1].append(fact)
        size += length
    total = len(batches)
    intro = (
        f"The record of {record.ref}, as of {record.full(record.prepared_at)}. "
        f"{record.check.summary()} Keep it private; place it on the child's or adult's file."
    )
    out = []
    for n, batch in enumerate(batches, start=1):
        text = intro if n == 1 else f"The record of {record.ref}"
        if total > 1:
            text += f" (part {n} of {total})"
        buttons = [Button(ActionId.VIEW_DETAILS, record.ref)] if n == total else []
        out.append(
            Message(
                Recipient.person(person_id),
                text,
                facts=batch,
                buttons=buttons,
                ref=record.ref,
                kind="direct",
            )
        )
    return out
