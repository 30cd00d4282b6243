"""The queries the service and timekeeper need, each backed by an index, in units of work.

Maps the domain's Dispute to rows and back. May import SQLAlchemy and the domain.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Engine, Table, and_, delete, func, insert, or_, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.disputes import OPEN_STATUSES, Dispute, Event, from_data, to_data
from bot.messages import Message
from bot.policy import Policy, policy_from_snapshot
from store.db import BUSY_SECONDS, make_engine
from store.models import (
    AgreedActionRow,
    CounterRow,
    DeadlineRow,
    DisputeRow,
    EventRow,
    FlowProgressRow,
    OutboxRow,
    ParticipantRow,
    PersonSeenRow,
    PolicySnapshotRow,
    ScheduledRunRow,
    ThreadRow,
)

GENESIS = "0" * 64
# Where a session keeps what it knows of each dispute it has locked, by reference (`_Locked`).
LOCKED = "locked_disputes"


_DISPUTES = cast(Table, DisputeRow.__table__)
_HEAD_COLUMNS = (
    _DISPUTES.c.id,
    _DISPUTES.c.ref,
    _DISPUTES.c.version,
    _DISPUTES.c.policy_fingerprint,
    _DISPUTES.c.state,
)


class _Head(NamedTuple):
    """What `load` and `save` need of a dispute's row."""

    id: int
    ref: str
    version: int
    policy_fingerprint: str
    state: dict[str, Any]


Projections = tuple[list[dict[str, Any]], list[dict[str, Any]]]


class _Locked(NamedTuple):
    """A dispute this session has locked: its row, and the deadline and agreed-action rows its
    state projects to. Locked (FOR UPDATE; on SQLite the unit holds the write lock), neither
    can go stale before `save`, which so reads neither again and rewrites only what changed.
    An unlocked row is not kept: `save` must read it again, and so sees a version changed by
    another replica meanwhile."""

    head: _Head
    projections: Projections


class NotFound(LookupError):
    """No dispute with that reference."""


class Conflict(RuntimeError):
    """Someone else changed the dispute at the same moment; the command should be retried."""


def event_hash(
    prev_hash: str,
    ref: str,
    seq: int,
    event_type: str,
    at: datetime,
    actor: str | None,
    data: dict[str, Any],
) -> str:
    """The hash of an event's canonical content, chained to the previous event's hash."""
    canonical = json.dumps(
        {
            "ref": ref,
            "seq": seq,
            "type": event_type,
            "at": at.astimezone(UTC).isoformat(),
            "actor": actor,
            "data": data,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


@dataclass(frozen=True)
class ClaimedMessage:
    """An outbox message claimed for sending by one worker."""

    id: int
    dispute_id: int | None
    message: Message
    attempts: int
    # A previous try may have reached the platform (its sender died mid-send, or the send
    # timed out after the platform got it): the platform should check before showing it.
    maybe_sent: bool


@dataclass(frozen=True)
class StoredEvent:
    """An event as recorded, with its place in the chain."""

    seq: int
    type: str
    at: datetime
    actor: str | None
    data: dict[str, Any]
    prev_hash: str
    hash: str


class Store:
    """The database: one unit of work per command."""

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For units that only read: on SQLite they begin DEFERRED, not IMMEDIATE (store/db.py),
        # so in WAL mode they read a snapshot without queueing for the one write lock.
        self._readers = sessionmaker(
            self.engine.execution_options(read_only=True), expire_on_commit=False
        )
        sa_event.listen(self._readers, "before_flush", _refuse_writes)
        self._policies: dict[str, Policy] = {}
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps and
        # polls (1, 2, 5 ... 100 ms) until it is free: twenty clicks at once waited out those
        # sleeps, not each other's 8 ms transactions. The threads of this process queue here
        # instead, each woken as the one before finishes; SQLite's own wait is left for
        # other processes. Re-entrant, so a unit opened inside another in the same thread
        # behaves as it did before. PostgreSQL locks rows, not the database: no queue there.
        self.writers: AbstractContextManager[Any] = (
            nullcontext() if self.is_postgres else _WriterQueue(BUSY_SECONDS)
        )
        # Applied to every message as it is queued (the app sets it to copy channel posts to
        # each platform the channel is on); None leaves messages as they are.
        self.route: Callable[[list[Message]], list[Message]] | None = None

    @property
    def is_postgres(self) -> bool:
        """Whether the backend is PostgreSQL (row locks with SKIP LOCKED)."""
        return self.engine.dialect.name == "postgresql"

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """A transaction: committed if the block succeeds, rolled back if it raises."""
        with self.writers, self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads (a write in it is refused): one consistent snapshot,
        taken without waiting for writers."""
        with self._readers.begin() as session:
            yield session

    # ---- references -------------------------------------------------------------------

    def next_ref(self, session: Session, prefix: str, year: int) -> str:
        """The next dispute reference, e.g. WST-2026-0007, unique even across replicas."""
        name = f"{prefix}-{year}"
        # One upsert, not UPDATE-then-INSERT: two replicas taking the first number of a year
        # at once both found no row and both inserted, and one failed on the primary key.
        insert = pg_insert if self.is_postgres else sqlite_insert
        bumped = session.execute(
            insert(CounterRow)
            .values(name=name, value=1)
            .on_conflict_do_update(
                index_elements=[CounterRow.name], set_={"value": CounterRow.value + 1}
            )
            .returning(CounterRow.value)
        ).scalar_one()
        return f"{prefix}-{year}-{bumped:04d}"

    # ---- disputes -----------------------------------------------------------------------

    def policy(self, session: Session, fingerprint: str) -> Policy:
        """The policy version a dispute was opened under."""
        cached = self._policies.get(fingerprint)
        if cached is None:
            row = session.get(PolicySnapshotRow, fingerprint)
            if row is None:
                raise NotFound(f"policy version {fingerprint} is missing from the database")
            cached = policy_from_snapshot(row.data)
            self._policies[fingerprint] = cached
        return cached

    def _head(self, session: Session, ref: str, *, lock: bool = False) -> _Head | None:
        """The dispute row's id, version, policy and state (not the whole row, not an object)."""
        query = select(*_HEAD_COLUMNS).where(_DISPUTES.c.ref == ref)
        if lock and self.is_postgres:
            query = query.with_for_update()
        found = session.connection().execute(query).first()
        return None if found is None else _Head._make(found)

    def _existing(self, session: Session, ref: str, *, lock: bool = False) -> _Head:
        """The row of the dispute `ref` as a person typed it; NotFound if there is none."""
        # References are typed by people: every lookup (not only `load`) ignores case and spaces.
        ref = ref.strip().upper()
        head = self._head(session, ref, lock=lock)
        if head is None:
            raise NotFound(f"no dispute with reference {ref}")
        return head

    def load(self, session: Session, ref: str, *, lock: bool = False) -> Dispute:
        """The dispute with this reference (locked for update on PostgreSQL when `lock`)."""
        head = self._existing(session, ref, lock=lock)
        dispute = from_data(head.state, self.policy(session, head.policy_fingerprint), head.version)
        if lock:
            # The deadline and agreed-action tables are written with the state, in one
            # transaction, so they hold what this state projects to.
            session.info.setdefault(LOCKED, {})[head.ref] = _Locked(head, _projections(dispute))
        return dispute

    def exists(self, session: Session, ref: str) -> bool:
        """Whether a dispute with this reference exists."""
        ref = ref.strip().upper()
        return (
            session.execute(select(DisputeRow.id).where(DisputeRow.ref == ref)).first() is not None
        )

    def save(
        self,
        session: Session,
        dispute: Dispute,
        messages: Iterable[Message] = (),
        *,
        participants: dict[str, str] | None = None,
        wake_at: datetime | None = None,
        now: datetime,
    ) -> list[StoredEvent]:
        """Save the dispute's state, its new events (chained) and its messages, atomically."""
        policy = dispute.policy
        # A policy read from the database is there for good (snapshots are never deleted).
        if (
            policy.fingerprint not in self._policies
            and session.get(PolicySnapshotRow, policy.fingerprint) is None
        ):
            session.add(
                PolicySnapshotRow(
                    fingerprint=policy.fingerprint,
                    policy_id=policy.id,
                    version=policy.version,
                    data=policy.snapshot(),
                    created_at=now,
                )
            )
        # The row this session locked the dispute in, if it did; else looked up.
        locked: _Locked | None = session.info.get(LOCKED, {}).get(dispute.ref)
        head = locked.head if locked else self._head(session, dispute.ref)
        next_due = dispute.next_due
        state = to_data(dispute)
        values = {
            "partnership_id": dispute.partnership_id,
            "policy_id": policy.id,
            "policy_version": policy.version,
            "policy_fingerprint": policy.fingerprint,
            "status": dispute.status.value,
            "stage": dispute.stage,
            "raising_agency": dispute.details.raising_agency,
            "receiving_agency": dispute.details.receiving_agency,
            "raised_by": dispute.details.raised_by,
            "receiving_person": dispute.details.receiving_person,
            "category": dispute.details.category,
            "immediate_risk": dispute.details.immediate_risk,
            "next_due_at": next_due.due_at if next_due and dispute.is_open else None,
            "wake_at": wake_at,
            "opened_at": dispute.opened_at,
            "closed_at": dispute.closed_at,
            "updated_at": now,
            "state": state,
        }
        if head is None:
            created = DisputeRow(ref=dispute.ref, **values)
            session.add(created)
            session.flush()
            head = _Head(created.id, dispute.ref, created.version, policy.fingerprint, state)
        else:
            if head.version != dispute.version:
                raise Conflict(f"{dispute.ref} was changed by someone else; try again")
            # A Core UPDATE guarded by the version, as the ORM's version counter would issue,
            # without the unit of work: the row is never held as an object.
            updated = _execute(
                session,
                update(_DISPUTES)
                .where(_DISPUTES.c.id == head.id, _DISPUTES.c.version == head.version)
                .values(**values, version=head.version + 1),
            )
            if updated.rowcount != 1:
                raise Conflict(f"{dispute.ref} was changed by someone else; try again")
            head = head._replace(version=head.version + 1, state=state)
        dispute.version = head.version
        stored = self._append_events(session, head, dispute.new_events)
        dispute.new_events = []
        projections = _projections(dispute)
        before = locked.projections if locked else None
        if before is None or before[0] != projections[0]:
            _replace(session, DeadlineRow, head.id, projections[0])
        if before is None or before[1] != projections[1]:
            _replace(session, AgreedActionRow, head.id, projections[1])
        if locked:
            # Still locked, now at this version: a second save in this unit compares with it.
            session.info[LOCKED][dispute.ref] = _Locked(head, projections)
        if participants is not None:
            _replace(
                session,
                ParticipantRow,
                head.id,
                [{"person_id": p, "relation": r} for p, r in participants.items()],
            )
        self.enqueue(
            session, messages, now=now, dispute_id=head.id, seq=stored[-1].seq if stored else 0
        )
        return stored

    def _append_events(
        self, session: Session, row: _Head, events: list[Event]
    ) -> list[StoredEvent]:
        last = session.execute(
            select(EventRow.seq, EventRow.hash)
            .where(EventRow.dispute_id == row.id)
            .order_by(EventRow.seq.desc())
            .limit(1)
        ).first()
        seq, prev = (last[0], last[1]) if last else (0, GENESIS)
        stored = []
        for event in events:
            seq += 1
            data = json.loads(json.dumps(event.data, default=str))
            digest = event_hash(prev, row.ref, seq, event.type, event.at, event.actor, data)
            stored.append(StoredEvent(seq, event.type, event.at, event.actor, data, prev, digest))
            prev = digest
        _insert(
            session,
            EventRow,
            [
                {
                    "dispute_id": row.id,
                    "seq": e.seq,
                    "type": e.type,
                    "at": e.at,
                    "actor": e.actor,
                    "data": e.data,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in stored
            ],
        )
        return stored

    def events(self, session: Session, ref: str) -> list[StoredEvent]:
        """A dispute's events in order."""
        row = self._existing(session, ref)
        rows = session.execute(
            select(EventRow).where(EventRow.dispute_id == row.id).order_by(EventRow.seq)
        ).scalars()
        return [
            StoredEvent(r.seq, r.type, r.at, r.actor, r.data, r.prev_hash, r.hash) for r in rows
        ]

    def open_for_person(self, session: Session, person_id: str) -> list[Dispute]:
        """The open disputes a person is involved in, soonest deadline first."""
        query = (
            select(DisputeRow)
            .join(ParticipantRow, ParticipantRow.dispute_id == DisputeRow.id)
            .where(
                ParticipantRow.person_id == person_id,
                DisputeRow.status.in_([s.value for s in OPEN_STATUSES]),
            )
            .order_by(DisputeRow.next_due_at)
        )
        rows = session.execute(query).scalars().unique()
        return [
            from_data(r.state, self.policy(session, r.policy_fingerprint), r.version) for r in rows
        ]

    def count_disputes(self, session: Session) -> int:
        """How many disputes there are."""
        return session.execute(select(func.count(DisputeRow.id))).scalar_one()

    # ---- the timekeeper -------------------------------------------------------------

    def due_for_timers(self, session: Session, *, now: datetime, limit: int = 100) -> list[str]:
        """References of disputes whose next timer has come, soonest first."""
        query = (
            select(DisputeRow.ref)
            .where(DisputeRow.wake_at.is_not(None), DisputeRow.wake_at <= now)
            .order_by(DisputeRow.wake_at)
            .limit(limit)
        )
        return list(session.execute(query).scalars())

    def open_disputes(self, session: Session, partnership_id: str) -> list[Dispute]:
        """Every open dispute of a partnership, soonest deadline first (for the digest)."""
        rows = session.execute(
            select(DisputeRow)
            .where(
                DisputeRow.partnership_id == partnership_id,
                DisputeRow.status.in_([s.value for s in OPEN_STATUSES]),
            )
            .order_by(DisputeRow.next_due_at)
        ).scalars()
        return [
            from_data(r.state, self.policy(session, r.policy_fingerprint), r.version) for r in rows
        ]

    def open_disputes_due_by(
        self, session: Session, partnership_id: str, due_by: datetime
    ) -> tuple[list[Dispute], int]:
        """The open disputes of a partnership whose soonest deadline is at or before `due_by`,
        soonest first (those due at the same moment in the order they were opened), and how
        many disputes of the partnership are open in all: what the digest needs.

        `next_due_at` is saved with the state (an open dispute's `next_due`, NULL once closed),
        so only the disputes due by then are read and rebuilt, through its index; the rest are
        only counted. The partnership and status are checked here, not in the query: given an
        equality on `partnership_id`, SQLite chose that index (every dispute of the
        partnership) over the range on `next_due_at`.
        """
        open_statuses = [s.value for s in OPEN_STATUSES]
        rows = session.execute(
            select(
                DisputeRow.partnership_id,
                DisputeRow.status,
                DisputeRow.state,
                DisputeRow.policy_fingerprint,
                DisputeRow.version,
            )
            .where(DisputeRow.next_due_at.is_not(None), DisputeRow.next_due_at <= due_by)
            .order_by(DisputeRow.next_due_at, DisputeRow.id)
        ).all()
        near = [
            from_data(r.state, self.policy(session, r.policy_fingerprint), r.version)
            for r in rows
            if r.partnership_id == partnership_id and r.status in open_statuses
        ]
        # COUNT(*), not COUNT(id): id is not in the (partnership_id, status) index, and
        # counting it made PostgreSQL read every row instead of the index alone (87 ms against
        # 15 ms at 100,000).
        total = session.execute(
            select(func.count())
            .select_from(DisputeRow)
            .where(
                DisputeRow.partnership_id == partnership_id,
                DisputeRow.status.in_(open_statuses),
            )
        ).scalar_one()
        return near, int(total)

    def has_run(self, session: Session, key: str) -> bool:
        """Whether a once-only run has been claimed."""
        return session.get(ScheduledRunRow, key) is not None

    def run_once(self, session: Session, key: str, *, now: datetime) -> bool:
        """Claim a once-only scheduled run; False if it already ran (here or on a replica)."""
        if session.get(ScheduledRunRow, key) is not None:
            return False
        try:
            with session.begin_nested():
                session.add(ScheduledRunRow(key=key, done_at=now))
        except IntegrityError:
            return False
        return True

    # ---- outbox ---------------------------------------------------------------------

    def enqueue(
        self,
        session: Session,
        messages: Iterable[Message],
        *,
        now: datetime,
        dispute_id: int | None = None,
        seq: int = 0,
    ) -> None:
        """Save outgoing messages in the caller's transaction, each with an idempotency key."""
        if self.route is not None:
            messages = self.route(list(messages))
        rows = []
        for i, message in enumerate(messages):
            if not message.key:
                # A message caused by a dispute event is keyed by it (a retry of the same
                # command cannot queue it twice); any other gets a key of its own.
                cause = f"{message.ref}:{seq}" if message.ref and seq else uuid.uuid4().hex
                message.key = f"{cause}:{i}:{message.recipient.kind}:{message.recipient.id}"
            rows.append(
                {
                    "dispute_id": dispute_id,
                    "key": message.key,
                    "recipient_kind": message.recipient.kind,
                    "recipient_id": message.recipient.id,
                    "kind": message.kind,
                    "payload": message.to_data(),
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
        _insert(session, OutboxRow, rows)

    def pending_messages(
        self, session: Session, *, now: datetime, limit: int = 100
    ) -> list[OutboxRow]:
        """Messages due to be sent, oldest first, claimed with SKIP LOCKED on PostgreSQL."""
        query = (
            select(OutboxRow)
            .where(OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now)
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return list(session.execute(query).scalars())

    def claim_messages(
        self, session: Session, *, now: datetime, lease: timedelta, worker: str, limit: int = 100
    ) -> list[ClaimedMessage]:
        """Claim messages to send: due ones, and ones whose sender's lease lapsed (it died)."""
        due = or_(
            and_(OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now),
            and_(OutboxRow.status == "sending", OutboxRow.claimed_until < now),
        )
        query = select(OutboxRow).where(due).order_by(OutboxRow.id).limit(limit)
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        claimed = []
        for row in session.execute(query).scalars():
            claimed.append(
                ClaimedMessage(
                    id=row.id,
                    dispute_id=row.dispute_id,
                    message=Message.from_data(row.payload),
                    attempts=row.attempts,
                    # Not only a lapsed claim: a send that failed (a timeout above all) may
                    # have arrived all the same, and its retry must not show it twice.
                    maybe_sent=row.status == "sending" or row.attempts > 0,
                )
            )
            row.status = "sending"
            row.claimed_by = worker
            row.claimed_until = now + lease
            # Counted at the claim, so a message that crashes its sender is parked in the end.
            row.attempts += 1
        return claimed

    def earlier_unsent_in_thread(
        self, session: Session, claimed: ClaimedMessage
    ) -> datetime | None:
        """When an earlier, still unsent channel message of the same dispute is next due.

        None when there is none, so the message may go now.
        """
        if claimed.dispute_id is None or claimed.message.recipient.kind != "channel":
            return None
        # The time, not only whether: a message waiting behind a root in backoff waits until
        # then, instead of being claimed (and crowding out others' messages) on every pass.
        query = select(func.min(OutboxRow.next_attempt_at)).where(
            OutboxRow.dispute_id == claimed.dispute_id,
            OutboxRow.recipient_kind == "channel",
            OutboxRow.id < claimed.id,
            OutboxRow.status.in_(("pending", "sending")),
        )
        return session.execute(query).scalar_one_or_none()

    def finish_message(
        self,
        session: Session,
        message_id: int,
        *,
        worker: str,
        status: str,
        now: datetime,
        retry_at: datetime | None = None,
        error: str | None = None,
        attempted: bool = True,
    ) -> bool:
        """Record how a claimed send ended; False if the claim was lost to another sender.

        `attempted=False` hands the message back untried (it waits behind an earlier one), so
        the claim does not count towards its attempts.
        """
        row = session.get(OutboxRow, message_id)
        if row is None or row.status != "sending" or row.claimed_by != worker:
            return False
        if not attempted:
            row.attempts = max(row.attempts - 1, 0)
        row.status = status
        row.claimed_by = None
        row.claimed_until = None
        if status == "sent":
            row.sent_at = now
        if retry_at is not None:
            row.next_attempt_at = retry_at
        if error is not None:
            row.last_error = error[:500]
        return True

    def thread_root(self, session: Session, ref: str, platform: str) -> str | None:
        """The id of a dispute's thread root on a platform, once posted."""
        return session.execute(
            select(ThreadRow.root_id).where(
                ThreadRow.dispute_ref == ref, ThreadRow.platform == platform
            )
        ).scalar_one_or_none()

    def save_thread_root(
        self, session: Session, ref: str, platform: str, channel: str, root_id: str
    ) -> None:
        """Remember where a dispute's thread lives on a platform."""
        session.add(ThreadRow(dispute_ref=ref, platform=platform, channel=channel, root_id=root_id))

    def oldest_unsent(self, session: Session) -> datetime | None:
        """When the oldest message still waiting to go was queued (None if none waits)."""
        return session.execute(
            select(func.min(OutboxRow.created_at)).where(
                OutboxRow.status.in_(("pending", "sending"))
            )
        ).scalar_one_or_none()

    def open_by_stage(self, session: Session) -> dict[int, int]:
        """How many disputes are open at each stage."""
        rows = session.execute(
            select(DisputeRow.stage, func.count())
            .where(DisputeRow.status.in_([s.value for s in OPEN_STATUSES]))
            .group_by(DisputeRow.stage)
        )
        return {stage: count for stage, count in rows}

    def outbox_counts(self, session: Session) -> dict[str, int]:
        """How many messages are in each state."""
        rows = session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status))
        return {status: count for status, count in rows}

    # ---- flows and people -------------------------------------------------------------

    def flow_state(self, session: Session, user_key: str, flow: str) -> dict[str, Any] | None:
        """A saved half-finished flow."""
        # Core on the connection, not an ORM query: asked at every intake's start, and the row
        # is not wanted as an object (half the cost of the read was the ORM's).
        table = cast(Table, FlowProgressRow.__table__)
        state: dict[str, Any] | None = (
            session.connection()
            .execute(
                select(table.c.state).where(table.c.user_key == user_key, table.c.flow == flow)
            )
            .scalar_one_or_none()
        )
        return state

    def save_flow_state(
        self,
        session: Session,
        user_key: str,
        flow: str,
        state: dict[str, Any] | None,
        *,
        now: datetime,
    ) -> None:
        """Save (or with None, forget) a half-finished flow."""
        row = session.execute(
            select(FlowProgressRow).where(
                FlowProgressRow.user_key == user_key, FlowProgressRow.flow == flow
            )
        ).scalar_one_or_none()
        if state is None:
            if row is not None:
                session.delete(row)
            return
        if row is None:
            session.add(FlowProgressRow(user_key=user_key, flow=flow, state=state, updated_at=now))
        else:
            row.state = state
            row.updated_at = now

    def people_seen(self, session: Session) -> list[dict[str, Any]]:
        """People remembered from chat, as directory entries."""
        return [r.data for r in session.execute(select(PersonSeenRow)).scalars()]

    def remember_person(self, session: Session, data: dict[str, Any], *, now: datetime) -> None:
        """Remember a person (or new facts about one) for next time."""
        row = session.get(PersonSeenRow, data["id"])
        if row is None:
            try:
                with session.begin_nested():
                    session.add(PersonSeenRow(id=data["id"], data=data, updated_at=now))
                return
            except IntegrityError:
                # Remembered by another request at the same moment (a new person's two clicks
                # at once, on PostgreSQL): theirs is committed now, so add to it instead.
                row = session.get(PersonSeenRow, data["id"])
                assert row is not None
        row.data = {**row.data, **data}
        row.updated_at = now


def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    # A reading unit on SQLite holds no write lock: a write there could fail with "database is
    # locked" under load, or be mistaken for a read. Use Store.unit for anything that writes.
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a reading unit of work may not write; use Store.unit()")


class _WriterQueue:
    """One writer at a time in this process, waited for no longer than SQLite itself would."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.RLock()

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=self.seconds):
            raise TimeoutError(
                f"the database stayed busy for {self.seconds:g} s; nothing was changed"
            )

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _insert(session: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """Insert rows in one statement, in the session's transaction.

    A dispute's save writes a dozen child rows (events, deadlines, participants, messages);
    as ORM objects each went through the unit of work, about half of an acknowledgement's
    10 ms. Nothing reads these rows back as objects within the transaction.
    """
    if rows:
        # The table, not the mapped class: a Core executemany, without the ORM's bulk layer.
        _execute(session, insert(model.__table__), rows)


def _execute(session: Session, statement: Any, rows: list[dict[str, Any]] | None = None) -> Any:
    """Run a Core statement that writes, on the session's connection, in its transaction.

    Not `session.execute`: for a DELETE or UPDATE that goes through the ORM's bulk-DML layer,
    which looks for objects to synchronise in the session. The rows written this way are never
    held as objects. A reading unit (which refuses ORM writes at flush) refuses these too.
    """
    connection = session.connection()
    if connection.get_execution_options().get("read_only"):
        raise RuntimeError("a reading unit of work may not write; use Store.unit()")
    return connection.execute(statement, rows)


def _replace(
    session: Session, model: type[Any], dispute_id: int, rows: list[dict[str, Any]]
) -> None:
    """Replace a dispute's rows in a child table with `rows`."""
    _execute(session, delete(model).where(model.dispute_id == dispute_id))
    _insert(session, model, [{"dispute_id": dispute_id, **r} for r in rows])


def _projections(dispute: Dispute) -> Projections:
    """A dispute's rows in the deadline and agreed-action tables (without its id)."""
    deadlines = (
        [
            {
                "stage": s.stage,
                "step_id": s.step_id,
                "due_at": s.due_at,
                "status": s.status,
                "local_target": s.local_target,
            }
            for s in dispute.open_steps()
        ]
        if dispute.is_open
        else []
    )
    resolution = dispute.resolution
    actions = (
        [
            {
                "number": a.id,
                "description": a.description,
                "owner": a.owner,
                "review_date": a.review_date.isoformat(),
                "status": a.status,
            }
            for a in resolution.actions
        ]
        if resolution is not None and resolution.status == "confirmed"
        else []
    )
    return deadlines, actions
