"""SQLAlchemy tables. Times are stored in UTC; events are append-only and hash-chained.

May import SQLAlchemy; never a platform library.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite's INTEGER PRIMARY KEY autoincrements only as plain INTEGER; PostgreSQL wants BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base: named constraints (so migrations can drop them) and UTC datetimes."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class DisputeRow(Base):
    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    ref: Mapped[str] = mapped_column(String(40), unique=True)
    partnership_id: Mapped[str] = mapped_column(String(64), index=True)
    policy_id: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(200))
    policy_fingerprint: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    stage: Mapped[int] = mapped_column(Integer)
    raising_agency: Mapped[str] = mapped_column(String(64))
    receiving_agency: Mapped[str] = mapped_column(String(64))
    raised_by: Mapped[str] = mapped_column(String(64), index=True)
    receiving_person: Mapped[str | None] = mapped_column(String(64), index=True)
    category: Mapped[str] = mapped_column(String(64))
    immediate_risk: Mapped[bool] = mapped_column(Boolean, default=False)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # When the timekeeper next has something to do for this dispute (reminder, breach...).
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=0)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's own API
    # Counting open disputes (the digest's total, /metrics' gauge by stage) reads only these
    # indexes, not every row's state: the count of 100,000 is an index scan, not a table scan.
    __table_args__ = (
        Index("ix_disputes_partnership_status", "partnership_id", "status"),
        Index("ix_disputes_status_stage", "status", "stage"),
    )


class PolicySnapshotRow(Base):
    """Each policy version once, by fingerprint: disputes keep the version they opened under."""

    __tablename__ = "policy_snapshots"

    fingerprint: Mapped[str] = mapped_column(String(32), primary_key=True)
    policy_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class DeadlineRow(Base):
    """An open step's deadline, so the timekeeper finds what is due with one indexed query."""

    __tablename__ = "deadlines"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dispute_id: Mapped[int] = mapped_column(
        ForeignKey("disputes.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(16))
    local_target: Mapped[bool] = mapped_column(Boolean, default=False)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("dispute_id", "seq"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dispute_id: Mapped[int] = mapped_column(
        ForeignKey("disputes.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    actor: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AgreedActionRow(Base):
    __tablename__ = "agreed_actions"
    __table_args__ = (UniqueConstraint("dispute_id", "number"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dispute_id: Mapped[int] = mapped_column(
        ForeignKey("disputes.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    review_date: Mapped[str] = mapped_column(String(10), index=True)
    status: Mapped[str] = mapped_column(String(16))


class OutboxRow(Base):
    """A message waiting to be sent, saved in the same transaction as its cause."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dispute_id: Mapped[int | None] = mapped_column(
        ForeignKey("disputes.id", ondelete="SET NULL"), index=True
    )
    key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient_kind: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # A sender's lease: while it runs, the row is theirs; once it lapses (the sender died),
    # any replica may claim the row again.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]


class ConversationRefRow(Base):
    """Where a person or channel can be reached on a platform (Teams conversation references)."""

    __tablename__ = "conversation_refs"
    __table_args__ = (UniqueConstraint("platform", "key"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(200))
    person_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class ThreadRow(Base):
    """A dispute's thread root on a platform's channel, so updates go in the same thread."""

    __tablename__ = "threads"
    __table_args__ = (UniqueConstraint("dispute_ref", "platform"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dispute_ref: Mapped[str] = mapped_column(String(40))
    platform: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(200))
    root_id: Mapped[str] = mapped_column(String(200))


class FlowProgressRow(Base):
    """A person's half-finished conversation, so an interruption loses nothing."""

    __tablename__ = "flow_progress"
    __table_args__ = (UniqueConstraint("user_key", "flow"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_key: Mapped[str] = mapped_column(String(200))
    flow: Mapped[str] = mapped_column(String(64))
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class PersonSeenRow(Base):
    """People the directory did not know, or identities learnt on a platform, remembered."""

    __tablename__ = "people_seen"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class CounterRow(Base):
    """Per-partnership, per-year reference numbers."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class ParticipantRow(Base):
    """Who is involved in a dispute, so "my disputes" is one indexed query."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("dispute_id", "person_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dispute_id: Mapped[int] = mapped_column(
        ForeignKey("disputes.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    relation: Mapped[str] = mapped_column(String(16))


class ScheduledRunRow(Base):
    """A scheduled job that has run for a given day (the digest): once, whatever the replicas."""

    __tablename__ = "scheduled_runs"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    done_at: Mapped[datetime]
