"""Where people and channels can be reached on a platform: Teams conversation references.

Functions over a Session (open one with `Store.unit()`). May import SQLAlchemy; never a
platform library: references are kept as the JSON the platform gave.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from store.models import ConversationRefRow, OutboxRow

# What the outbox writes when no platform could reach a person (bot/outbox.py).
UNREACHABLE = "no platform can reach this recipient"


def save_reference(
    session: Session,
    *,
    platform: str,
    key: str,
    reference: dict[str, Any],
    person_id: str | None = None,
    now: datetime,
) -> bool:
    """Keep the latest reference for `key`; True if this is the first one for it.

    A known person is never forgotten: a later turn without a person id keeps the one stored.
    """
    existed = (
        session.execute(
            select(ConversationRefRow.id).where(
                ConversationRefRow.platform == platform, ConversationRefRow.key == key
            )
        ).first()
        is not None
    )
    values = {
        "platform": platform,
        "key": key,
        "reference": reference,
        "person_id": person_id,
        "updated_at": now,
    }
    changes: dict[str, Any] = {"reference": reference, "updated_at": now}
    if person_id is not None:
        changes["person_id"] = person_id
    # An upsert, so two turns of the same person at once cannot both insert.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(ConversationRefRow).values(**values)
    session.execute(
        statement.on_conflict_do_update(index_elements=["platform", "key"], set_=changes)
    )
    return not existed


def reference(session: Session, platform: str, key: str) -> dict[str, Any] | None:
    """The stored reference for `key`, if any."""
    return session.execute(
        select(ConversationRefRow.reference).where(
            ConversationRefRow.platform == platform, ConversationRefRow.key == key
        )
    ).scalar_one_or_none()


def first_reference(
    session: Session, platform: str, keys: Iterable[str]
) -> tuple[str, dict[str, Any]] | None:
    """The first of `keys` (in the order given) that has a stored reference."""
    wanted = [k for k in keys if k]
    if not wanted:
        return None
    rows: dict[str, dict[str, Any]] = dict(
        session.execute(
            select(ConversationRefRow.key, ConversationRefRow.reference).where(
                ConversationRefRow.platform == platform, ConversationRefRow.key.in_(wanted)
            )
        ).all()
    )
    for key in wanted:
        if key in rows:
            return key, rows[key]
    return None


def person_keys(session: Session, platform: str, person_id: str) -> list[str]:
    """Every key stored for a directory person."""
    return list(
        session.execute(
            select(ConversationRefRow.key).where(
                ConversationRefRow.platform == platform, ConversationRefRow.person_id == person_id
            )
        ).scalars()
    )


def keys_with_prefix(session: Session, platform: str, prefix: str) -> set[str]:
    """Every stored key starting with `prefix` (say 'user:')."""
    return set(
        session.execute(
            select(ConversationRefRow.key).where(
                ConversationRefRow.platform == platform,
                ConversationRefRow.key.startswith(prefix, autoescape=True),
            )
        ).scalars()
    )


def people_met(session: Session, platform: str, prefix: str) -> set[str]:
    """The person ids behind the keys starting with `prefix`."""
    return {
        person_id
        for person_id in session.execute(
            select(ConversationRefRow.person_id).where(
                ConversationRefRow.platform == platform,
                ConversationRefRow.person_id.is_not(None),
                ConversationRefRow.key.startswith(prefix, autoescape=True),
            )
        ).scalars()
        if person_id
    }


def any_reference(session: Session, platform: str, prefix: str) -> dict[str, Any] | None:
    """The most recently used reference whose key starts with `prefix`."""
    return session.execute(
        select(ConversationRefRow.reference)
        .where(
            ConversationRefRow.platform == platform,
            ConversationRefRow.key.startswith(prefix, autoescape=True),
        )
        .order_by(ConversationRefRow.updated_at.desc(), ConversationRefRow.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def release_unreachable(session: Session, person_id: str, *, now: datetime) -> int:
    """Put back in the queue the messages set aside because nobody could reach this person.

    Called when the person first opens the bot: what they missed is sent after all.
    """
    result = session.execute(
        update(OutboxRow)
        .where(
            OutboxRow.status == "parked",
            OutboxRow.recipient_kind == "person",
            OutboxRow.recipient_id == person_id,
            OutboxRow.last_error == UNREACHABLE,
        )
        .values(status="pending", next_attempt_at=now, attempts=0)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
