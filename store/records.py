"""The record's queries: every dispute's events for verification, the disputes closed in a
period for the board report, retention candidates, and removing personal details.

May import SQLAlchemy, the store's models and the domain. How a redacted event stays
verifiable is explained in bot/records.py (retention and the hash chain).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from bot.records import REDACTION_EVENT, RecordedEvent
from store.models import DisputeRow, EventRow, OutboxRow

CLOSED_STATUSES = ("resolved", "withdrawn", "closed")
IN_FLIGHT = ("sending",)


def _event(row: EventRow) -> RecordedEvent:
    return RecordedEvent(
        seq=row.seq,
        type=row.type,
        at=row.at,
        actor=row.actor,
        data=row.data,
        prev_hash=row.prev_hash,
        hash=row.hash,
        row_id=row.id,
    )


def _dispute_id(session: Session, ref: str) -> int:
    found = session.execute(
        select(DisputeRow.id).where(DisputeRow.ref == ref.strip().upper())
    ).scalar_one_or_none()
    if found is None:
        raise LookupError(f"no dispute with reference {ref.strip().upper()}")
    return found


def chain(session: Session, ref: str) -> list[RecordedEvent]:
    """One dispute's events as stored, in their recorded order, with their row ids."""
    dispute_id = _dispute_id(session, ref)
    rows = session.execute(
        select(EventRow)
        .where(EventRow.dispute_id == dispute_id)
        .order_by(EventRow.seq, EventRow.id)
    ).scalars()
    return [_event(r) for r in rows]


def chains(session: Session) -> Iterator[tuple[str, list[RecordedEvent]]]:
    """Every dispute's events, dispute by dispute (one with no events left gets an empty list)."""
    disputes = session.execute(select(DisputeRow.id, DisputeRow.ref).order_by(DisputeRow.id)).all()
    rows = session.execute(
        select(EventRow)
        .order_by(EventRow.dispute_id, EventRow.seq, EventRow.id)
        .execution_options(yield_per=1000)
    ).scalars()
    grouped = groupby(rows, key=lambda r: r.dispute_id)
    pending = next(grouped, None)
    for dispute_id, ref in disputes:
        while pending is not None and pending[0] < dispute_id:
            pending = next(grouped, None)  # events of no dispute (cannot happen with the FK)
        if pending is not None and pending[0] == dispute_id:
            yield ref, [_event(r) for r in pending[1]]
            pending = next(grouped, None)
        else:
            yield ref, []


def closed_between(
    session: Session, partnership_id: str, start: datetime, end: datetime
) -> list[str]:
    """References of a partnership's disputes closed in [start, end), by closing time."""
    return list(
        session.execute(
            select(DisputeRow.ref)
            .where(
                DisputeRow.partnership_id == partnership_id,
                DisputeRow.status.in_(CLOSED_STATUSES),
                DisputeRow.closed_at.is_not(None),
                DisputeRow.closed_at >= start,
                DisputeRow.closed_at < end,
            )
            .order_by(DisputeRow.closed_at, DisputeRow.ref)
        ).scalars()
    )


def retention_candidates(
    session: Session, partnership_id: str, closed_before: datetime
) -> list[tuple[str, datetime]]:
    """Disputes closed before the cut-off whose personal details are still there."""
    already = exists().where(EventRow.dispute_id == DisputeRow.id, EventRow.type == REDACTION_EVENT)
    rows = session.execute(
        select(DisputeRow.ref, DisputeRow.closed_at)
        .where(
            DisputeRow.partnership_id == partnership_id,
            DisputeRow.status.in_(CLOSED_STATUSES),
            DisputeRow.closed_at.is_not(None),
            DisputeRow.closed_at < closed_before,
            ~already,
        )
        .order_by(DisputeRow.closed_at, DisputeRow.ref)
    ).all()
    return [(ref, closed_at) for ref, closed_at in rows if closed_at is not None]


def replace_event_data(session: Session, ref: str, changes: dict[int, dict[str, Any]]) -> int:
    """Give events new content (their hashes untouched): for redaction only. Returns how many."""
    if not changes:
        return 0
    dispute_id = _dispute_id(session, ref)
    rows = session.execute(
        select(EventRow).where(EventRow.dispute_id == dispute_id, EventRow.seq.in_(changes))
    ).scalars()
    count = 0
    for row in rows:
        row.data = changes[row.seq]
        count += 1
    session.flush()
    return count


def delete_delivered_messages(session: Session, ref: str) -> int:
    """Drop a dispute's outbox messages (they hold copies of its details), bar any mid-send."""
    dispute_id = _dispute_id(session, ref)
    result = session.execute(
        delete(OutboxRow).where(
            OutboxRow.dispute_id == dispute_id, OutboxRow.status.not_in(IN_FLIGHT)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
