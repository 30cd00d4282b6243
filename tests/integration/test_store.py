"""The store's contract, on SQLite and on PostgreSQL alike: schema, references, disputes, the
hash-chained record, deadlines, the outbox, saved conversations and people seen.

A few tests need two connections working at the same moment; SQLite serialises whole
transactions, so those run on PostgreSQL only (by asking for `pg_url`, never by skipping).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, func, inspect, select, text, update
from sqlalchemy.orm import Session

from bot.app import Core, build_core
from bot.clock import FakeClock
from bot.config import Settings
from bot.disputes import Action, Dispute, DisputeDetails, to_data
from bot.messages import ActionId, Button, Message, Recipient
from store import db
from store.models import (
    AgreedActionRow,
    Base,
    CounterRow,
    DeadlineRow,
    DisputeRow,
    EventRow,
    OutboxRow,
    ParticipantRow,
    ScheduledRunRow,
)
from store.repository import GENESIS, Conflict, NotFound, Store, StoredEvent, event_hash

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)  # the `clock` fixture's start
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "partnership.yaml"
# Long enough for a PostgreSQL backend to be seen waiting on a lock; never reached when well.
LOCK_WAIT_DEADLINE = timedelta(seconds=20)


# --- helpers ------------------------------------------------------------------------------


def details(**changes: Any) -> DisputeDetails:
    """What the intake flow gives (bot/flows/intake.py `details_from`) for a typical case."""
    base: dict[str, Any] = {
        "raised_by": "amara.okafor",
        "raising_agency": "cwc-childrens",
        "receiving_agency": "rwt",
        "receiving_person": "ben.carter",
        "category": "threshold",
        "case_ref": "CS-48213",
        "decision": "Health visiting will close the case this week.",
        "reasons": "Two missed appointments and a new partner in the household.",
        "outcome_sought": "Keep the case open until the strategy meeting.",
        "disagreement_date": date(2026, 11, 25),
        "immediate_risk": False,
    }
    base.update(changes)
    return DisputeDetails(**base)


def open_one(core: Core, **changes: Any) -> Dispute:
    outcome = core.service.open(details(**changes))
    assert outcome.ok, outcome.text
    assert outcome.dispute is not None
    return outcome.dispute


def migrated_store(url: str) -> Iterator[Store]:
    db.upgrade(url)
    store = Store(url)
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store, once on SQLite and once on PostgreSQL."""
    yield from migrated_store(db_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    """A migrated store on PostgreSQL."""
    yield from migrated_store(pg_url)


def second_core(core: Core, clock: FakeClock) -> Core:
    """Another replica of the bot on the same database (its own engine and service)."""
    settings = Settings(
        database_url=core.settings.database_url,
        escalation_config=core.settings.escalation_config,
    )
    return build_core(settings, clock=clock, migrate=False)


def chain_problems(ref: str, events: list[StoredEvent]) -> list[int]:
    """The seqs at which the hash chain does not hold (empty when the record is intact)."""
    bad = []
    prev = GENESIS
    for expected_seq, e in enumerate(events, start=1):
        digest = event_hash(e.prev_hash, ref, e.seq, e.type, e.at, e.actor, e.data)
        if e.seq != expected_seq or e.prev_hash != prev or e.hash != digest:
            bad.append(e.seq)
        prev = e.hash
    return bad


def count(session: Session, column: Any) -> int:
    return int(session.execute(select(func.count(column))).scalar_one())


def wait_until_blocked(engine: Engine, worker: threading.Thread) -> None:
    """Return once another backend of this database is waiting on a lock (no sleeping)."""
    deadline = datetime.now(UTC) + LOCK_WAIT_DEADLINE
    with engine.connect() as conn:
        while datetime.now(UTC) < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            conn.rollback()  # a fresh snapshot of pg_stat_activity each time round
            if waiting:
                return
            if not worker.is_alive():
                return  # it finished without waiting: the caller's asserts decide
    raise AssertionError("the second session never waited on the first one's lock")


class Worker(threading.Thread):
    """Runs `fn` in a thread and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(LOCK_WAIT_DEADLINE.total_seconds())
        assert not self.is_alive(), "the worker is still blocked"
        if self.error is not None:
            raise self.error
        return self.result


# --- migrations ---------------------------------------------------------------------------


def test_upgrade_brings_a_fresh_database_to_the_head_revision(db_url: str) -> None:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        assert db.current_revision(engine) == db.head_revision(db_url)
        assert db.head_revision(db_url) is not None
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()

    assert set(Base.metadata.tables) <= tables


def test_upgrading_twice_changes_nothing_and_keeps_the_data(db_url: str) -> None:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(CounterRow.__table__.insert().values(name="WST-2026", value=41))
        before = (db.current_revision(engine), sorted(inspect(engine).get_table_names()))

        db.upgrade(db_url)

        after = (db.current_revision(engine), sorted(inspect(engine).get_table_names()))
        with engine.connect() as conn:
            kept = conn.execute(select(CounterRow.value)).scalar_one()
    finally:
        engine.dispose()
    assert after == before
    assert kept == 41


def test_the_migrated_schema_matches_the_models(db_url: str) -> None:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


# --- references ---------------------------------------------------------------------------


def test_references_count_up_from_one_per_prefix_and_year(store: Store) -> None:
    with store.unit() as session:
        first = [store.next_ref(session, "WST", 2026) for _ in range(3)]
    with store.unit() as session:
        later = store.next_ref(session, "WST", 2026)
        other_prefix = store.next_ref(session, "ABC", 2026)
        next_year = store.next_ref(session, "WST", 2027)

    assert first == ["WST-2026-0001", "WST-2026-0002", "WST-2026-0003"]
    assert later == "WST-2026-0004"
    assert other_prefix == "ABC-2026-0001"
    assert next_year == "WST-2027-0001"


def test_a_reference_taken_in_a_rolled_back_transaction_is_given_out_again(store: Store) -> None:
    with store.unit() as session:
        store.next_ref(session, "WST", 2026)
    with pytest.raises(RuntimeError), store.unit() as session:
        assert store.next_ref(session, "WST", 2026) == "WST-2026-0002"
        raise RuntimeError("the command failed after taking a number")
    with store.unit() as session:
        again = store.next_ref(session, "WST", 2026)

    assert again == "WST-2026-0002"


@pytest.mark.parametrize("taken_before", [0, 5], ids=["first-of-the-year", "counter-exists"])
def test_two_sessions_taking_a_reference_at_once_get_consecutive_numbers(
    pg_store: Store, taken_before: int
) -> None:
    for _ in range(taken_before):
        with pg_store.unit() as session:
            pg_store.next_ref(session, "WST", 2026)

    def take() -> str:
        with pg_store.unit() as session:
            return pg_store.next_ref(session, "WST", 2026)

    with pg_store.unit() as session:
        first = pg_store.next_ref(session, "WST", 2026)
        # The second session must wait for this one; it may not fail or repeat the number.
        worker = Worker(take)
        worker.start()
        wait_until_blocked(pg_store.engine, worker)
    second = worker.outcome()

    assert [first, second] == [
        f"WST-2026-{taken_before + 1:04d}",
        f"WST-2026-{taken_before + 2:04d}",
    ]


# --- disputes -----------------------------------------------------------------------------


def test_a_dispute_opened_by_the_service_loads_back_exactly(any_core: Core) -> None:
    opened = open_one(any_core)

    with any_core.store.unit() as session:
        loaded = any_core.store.load(session, opened.ref)
        by_lower_case = any_core.store.load(session, opened.ref.lower())

    assert opened.ref == "WST-2026-0001"
    assert to_data(loaded) == to_data(opened)
    assert to_data(by_lower_case) == to_data(opened)
    assert loaded.version == opened.version >= 1
    assert loaded.policy == any_core.partnership.policy
    assert loaded.details == details()
    assert loaded.opened_at == any_core.service.clock.now()
    assert loaded.new_events == []


def test_the_dispute_row_carries_the_columns_the_queries_use(any_core: Core) -> None:
    opened = open_one(any_core)

    with any_core.store.unit() as session:
        row = session.execute(select(DisputeRow).where(DisputeRow.ref == opened.ref)).scalar_one()
        participants = dict(
            session.execute(
                select(ParticipantRow.person_id, ParticipantRow.relation).where(
                    ParticipantRow.dispute_id == row.id
                )
            ).all()
        )

    assert (row.status, row.stage, row.raising_agency, row.receiving_agency) == (
        "open",
        1,
        "cwc-childrens",
        "rwt",
    )
    assert row.policy_fingerprint == any_core.partnership.policy.fingerprint
    assert opened.next_due is not None
    assert row.next_due_at == opened.next_due.due_at
    assert participants["amara.okafor"] == "raiser"
    assert participants["ben.carter"] == "party"


def test_loading_an_unknown_reference_raises_not_found(any_core: Core) -> None:
    with pytest.raises(NotFound), any_core.store.unit() as session:
        any_core.store.load(session, "WST-2026-9999")


def test_saving_a_stale_copy_raises_conflict_and_keeps_the_newer_change(
    any_core: Core, clock: FakeClock
) -> None:
    ref = open_one(any_core).ref
    store, service = any_core.store, any_core.service
    with store.unit() as session:
        mine = store.load(session, ref)
    with store.unit() as session:
        theirs = store.load(session, ref)
    ben = service.directory.person("ben.carter")
    tom = service.directory.person("tom.hadley")

    clock.advance(timedelta(minutes=5))
    assert theirs.acknowledge(ben, service.directory, service.partnership.calendar, clock.now())
    with store.unit() as session:
        store.save(session, theirs, now=clock.now())
    clock.advance(timedelta(minutes=5))
    mine.add_note(tom, service.directory, service.partnership.calendar, clock.now(), text="Hi")

    with pytest.raises(Conflict), store.unit() as session:
        store.save(session, mine, now=clock.now())

    with store.unit() as session:
        kept = store.load(session, ref)
        types = [e.type for e in store.events(session, ref)]
    assert kept.version == theirs.version
    assert kept.acknowledged_by("receiving") == ("ben.carter", NOW + timedelta(minutes=5))
    assert "NoteAdded" not in types
    assert types[-1] == "Acknowledged"


def test_a_copy_that_went_stale_inside_the_saving_transaction_raises_conflict(
    pg_url: str, clock: FakeClock
) -> None:
    # Loaded without a lock, then changed by another replica before this one saves: the row
    # cached in the session still has the old version, so only the UPDATE can notice.
    core = build_core(Settings(database_url=pg_url, escalation_config=str(EXAMPLE)), clock=clock)
    other = second_core(core, clock)
    try:
        ref = open_one(core).ref
        service = core.service
        tom = service.directory.person("tom.hadley")
        with pytest.raises(Conflict), core.store.unit() as session:
            mine = core.store.load(session, ref)
            assert other.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
            mine.add_note(tom, service.directory, service.partnership.calendar, NOW, text="Hi")
            core.store.save(session, mine, now=NOW)
        with core.store.unit() as session:
            types = [e.type for e in core.store.events(session, ref)]
    finally:
        other.store.dispose()
        core.store.dispose()
    assert types[-1] == "Acknowledged"
    assert "NoteAdded" not in types


def test_an_acknowledgement_reads_its_dispute_once_and_its_policy_not_at_all(
    any_core: Core,
) -> None:
    # The row locked to load the dispute is the row saved: not read a second time. A policy
    # read from the database is known to be there: its snapshot is not looked up again.
    ref = open_one(any_core).ref
    with any_core.store.unit() as session:
        any_core.store.load(session, ref)  # the policy, read once
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(any_core.store.engine, "before_cursor_execute", record)
    try:
        assert any_core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    finally:
        event.remove(any_core.store.engine, "before_cursor_execute", record)
    selects = [s for s in statements if s.startswith("SELECT")]
    assert len([s for s in selects if " FROM disputes " in f"{s} "]) == 1, selects
    assert not [s for s in selects if "policy_snapshots" in s], selects
    # Each kind of row inserted in one statement, whatever the number of rows.
    inserts = [s.split()[2] for s in statements if s.startswith("INSERT")]
    assert len(inserts) == len(set(inserts)), inserts
    with any_core.store.unit() as session:
        assert [e.type for e in any_core.store.events(session, ref)][-1] == "Acknowledged"


def _tables_of(
    core: Core, ref: str
) -> tuple[Dispute, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The dispute, and its rows in the deadline and agreed-action tables."""
    with core.store.reading() as session:
        dispute = core.store.load(session, ref)
        row_id = session.execute(select(DisputeRow.id).where(DisputeRow.ref == ref)).scalar_one()
        deadlines = session.execute(
            select(DeadlineRow.step_id, DeadlineRow.due_at, DeadlineRow.status)
            .where(DeadlineRow.dispute_id == row_id)
            .order_by(DeadlineRow.step_id)
        ).all()
        actions = session.execute(
            select(AgreedActionRow.number, AgreedActionRow.description, AgreedActionRow.status)
            .where(AgreedActionRow.dispute_id == row_id)
            .order_by(AgreedActionRow.number)
        ).all()
    return dispute, [tuple(r) for r in deadlines], [tuple(r) for r in actions]


def test_deadline_and_action_tables_follow_the_dispute_and_are_rewritten_only_on_change(
    any_core: Core, clock: FakeClock
) -> None:
    # The tables are kept as the dispute's state says through its changes; an action that
    # leaves them as they were (a note, an acknowledgement here) does not rewrite them.
    service = any_core.service
    ref = open_one(any_core).ref
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    def rewritten() -> list[str]:
        deletes = [s.split()[2] for s in statements if s.startswith("DELETE FROM")]
        statements.clear()
        return [t for t in deletes if t in ("deadlines", "agreed_actions")]

    def check() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        dispute, deadlines, actions = _tables_of(any_core, ref)
        steps = sorted((s.step_id, s.due_at, s.status) for s in dispute.open_steps())
        assert deadlines == (steps if dispute.is_open else [])
        return deadlines, actions

    before, _ = check()
    assert before
    event.listen(any_core.store.engine, "before_cursor_execute", record)
    try:
        assert service.act(ref, "tom.hadley", Action.ADD_NOTE, text="Called the school.").ok
        assert rewritten() == []
        assert service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
        assert rewritten() == []
        assert check() == (before, [])
        clock.advance(timedelta(hours=1))
        proposed = service.act(
            ref,
            "ben.carter",
            Action.PROPOSE_RESOLUTION,
            outcome="A strategy discussion will be held.",
            actions=[("Hold the strategy discussion", "ben.carter", date(2026, 12, 4))],
        )
        assert proposed.ok, proposed.text
        assert rewritten() == ["deadlines"]
        assert check()[0] != before
        confirmed = service.act(ref, "amara.okafor", Action.RESPOND_TO_RESOLUTION, confirm=True)
        assert confirmed.ok, confirmed.text
        assert sorted(rewritten()) == ["agreed_actions", "deadlines"]
    finally:
        event.remove(any_core.store.engine, "before_cursor_execute", record)
    assert check()[1] == [(1, "Hold the strategy discussion", "open")]


def test_writers_in_one_process_queue_for_sqlite_instead_of_polling_its_lock(core: Core) -> None:
    # With SQLite's own wait switched off, eight acknowledgements at once would fail with
    # "database is locked" if they met at the database; they queue in the store instead.
    refs = [open_one(core).ref for _ in range(8)]
    engine = core.store.engine
    engine.dispose()

    def no_waiting(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    event.listen(engine, "connect", no_waiting)
    start = threading.Barrier(len(refs))
    outcomes: list[Any] = []

    def acknowledge(ref: str) -> None:
        start.wait()
        outcomes.append(core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE))

    workers = [threading.Thread(target=acknowledge, args=(ref,)) for ref in refs]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    finally:
        event.remove(engine, "connect", no_waiting)
    assert len(outcomes) == len(refs)
    assert all(o.ok for o in outcomes), [o.text for o in outcomes if not o.ok]
    with core.store.unit() as session:
        for ref in refs:
            assert core.store.events(session, ref)[-1].type == "Acknowledged"


def test_a_writer_that_cannot_get_its_turn_gives_up_plainly_and_changes_nothing(
    core: Core,
) -> None:
    ref = open_one(core).ref
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with core.store.unit():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(30)
    core.store.writers.seconds = 0  # as if SQLite's 30 s had passed
    try:
        with pytest.raises(TimeoutError, match="nothing was changed"):
            core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE)
    finally:
        release.set()
        holder.join(30)
    with core.store.unit() as session:
        assert "Acknowledged" not in [e.type for e in core.store.events(session, ref)]


# --- the record: events, hash-chained -----------------------------------------------------


def test_events_are_numbered_and_hash_chained_from_the_genesis_hash(
    any_core: Core, clock: FakeClock
) -> None:
    ref = open_one(any_core).ref
    clock.advance(timedelta(hours=1))
    assert any_core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    assert any_core.service.act(ref, "amara.okafor", Action.ADD_NOTE, text="Spoke to Ben.").ok

    with any_core.store.unit() as session:
        events = any_core.store.events(session, ref)

    assert [e.type for e in events] == [
        "DisputeOpened",
        "StepCompleted",
        "Acknowledged",
        "NoteAdded",
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert len({e.hash for e in events}) == len(events)
    assert chain_problems(ref, events) == []
    assert events[2].actor == "ben.carter"
    assert events[2].at == NOW + timedelta(hours=1)


def test_changing_an_events_data_in_the_database_breaks_the_chain_there(any_core: Core) -> None:
    ref = open_one(any_core).ref
    assert any_core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    with any_core.store.unit() as session:
        dispute_id = session.execute(
            select(DisputeRow.id).where(DisputeRow.ref == ref)
        ).scalar_one()
        opened = session.execute(
            select(EventRow).where(EventRow.dispute_id == dispute_id, EventRow.seq == 1)
        ).scalar_one()
        forged = {**opened.data, "case_ref": "CS-00000"}

    with any_core.store.engine.begin() as conn:
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == dispute_id, EventRow.seq == 1)
            .values(data=forged)
        )
    with any_core.store.unit() as session:
        events = any_core.store.events(session, ref)

    assert events[0].data["case_ref"] == "CS-00000"
    assert chain_problems(ref, events) == [1]


def test_deleting_an_event_breaks_the_chain_at_the_next_one(any_core: Core) -> None:
    ref = open_one(any_core).ref
    assert any_core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    with any_core.store.engine.begin() as conn:
        dispute_id = conn.execute(select(DisputeRow.id).where(DisputeRow.ref == ref)).scalar_one()
        conn.execute(
            EventRow.__table__.delete().where(EventRow.dispute_id == dispute_id, EventRow.seq == 2)
        )
    with any_core.store.unit() as session:
        events = any_core.store.events(session, ref)

    assert [e.seq for e in events] == [1, 3]
    assert chain_problems(ref, events) == [3]


def test_a_reference_typed_in_lower_case_finds_the_dispute_and_its_events(any_core: Core) -> None:
    ref = open_one(any_core).ref
    typed = f"  {ref.lower()} "

    with any_core.store.unit() as session:
        events = any_core.store.events(session, typed)
        found = any_core.store.exists(session, typed)
        missing = any_core.store.exists(session, "wst-2026-0002")

    assert [e.seq for e in events] == [1, 2]
    assert (found, missing) == (True, False)


# --- deadlines ----------------------------------------------------------------------------


def deadline_rows(core: Core, ref: str) -> list[tuple[int, str, datetime, str]]:
    with core.store.unit() as session:
        dispute_id = session.execute(
            select(DisputeRow.id).where(DisputeRow.ref == ref)
        ).scalar_one()
        rows = session.execute(
            select(DeadlineRow)
            .where(DeadlineRow.dispute_id == dispute_id)
            .order_by(DeadlineRow.due_at)
        ).scalars()
        return [(r.stage, r.step_id, r.due_at, r.status) for r in rows]


def test_the_deadlines_table_holds_the_open_steps_due_times(
    any_core: Core, clock: FakeClock
) -> None:
    dispute = open_one(any_core)

    # Disagreement on Wed 25 Nov: raise within 2 working days (done by opening), then the
    # receiving practitioner has 3 more working days: Thu 26, Fri 27, Mon 30 Nov, Tue 1 Dec.
    assert deadline_rows(any_core, dispute.ref) == [
        (1, "find-way-forward", datetime(2026, 12, 1, 17, 0, tzinfo=UTC), "active")
    ]
    assert [(s.stage, s.step_id, s.due_at) for s in dispute.open_steps()] == [
        (r[0], r[1], r[2]) for r in deadline_rows(any_core, dispute.ref)
    ]

    clock.advance(timedelta(hours=2))
    escalated = any_core.service.act(
        dispute.ref, "amara.okafor", Action.ESCALATE, reason="No reply from health visiting."
    )
    assert escalated.ok, escalated.text
    assert escalated.dispute is not None
    # Stage 2 counts 2 working days from the escalation on Thu 26 Nov: due Mon 30 Nov.
    assert deadline_rows(any_core, dispute.ref) == [
        (2, "managers-resolve", datetime(2026, 11, 30, 17, 0, tzinfo=UTC), "active")
    ]

    withdrawn = any_core.service.act(
        dispute.ref, "amara.okafor", Action.WITHDRAW, reason="Resolved by phone."
    )
    assert withdrawn.ok, withdrawn.text
    assert deadline_rows(any_core, dispute.ref) == []


# --- the outbox ---------------------------------------------------------------------------


def message(n: int, recipient: Recipient | None = None) -> Message:
    return Message(
        recipient or Recipient.person(f"person-{n}"),
        f"Message {n}",
        facts=[("Stage", "1 of 4")],
        buttons=[Button(ActionId.ACKNOWLEDGE, "WST-2026-0001", "primary")],
        ref="WST-2026-0001",
    )


def test_enqueued_messages_are_pending_from_their_time_in_order(store: Store) -> None:
    sent = [message(n) for n in range(3)]
    with store.unit() as session:
        store.enqueue(session, sent, now=NOW)

    with store.unit() as session:
        early = store.pending_messages(session, now=NOW - timedelta(seconds=1))
        due = store.pending_messages(session, now=NOW)
        first_two = store.pending_messages(session, now=NOW, limit=2)
        payloads = [Message.from_data(r.payload) for r in due]
        keys = [r.key for r in due]

    assert early == []
    assert [r.recipient_id for r in due] == ["person-0", "person-1", "person-2"]
    assert [r.recipient_id for r in first_two] == ["person-0", "person-1"]
    assert all(r.status == "pending" and r.attempts == 0 for r in due)
    assert payloads == sent  # every field survives, including the keys given on enqueue
    assert len(set(keys)) == 3


def test_messages_enqueued_in_a_failed_transaction_are_not_kept(store: Store) -> None:
    with pytest.raises(RuntimeError), store.unit() as session:
        store.enqueue(session, [message(1)], now=NOW)
        raise RuntimeError("the command failed")

    with store.unit() as session:
        assert store.pending_messages(session, now=NOW) == []


def test_a_second_worker_skips_the_messages_another_has_claimed(pg_store: Store) -> None:
    with pg_store.unit() as session:
        pg_store.enqueue(session, [message(n) for n in range(4)], now=NOW)

    with pg_store.unit() as first:
        claimed = pg_store.pending_messages(first, now=NOW, limit=2)
        with pg_store.unit() as second:
            others = pg_store.pending_messages(second, now=NOW)

    assert [r.recipient_id for r in claimed] == ["person-0", "person-1"]
    assert [r.recipient_id for r in others] == ["person-2", "person-3"]


def outbox(core: Core) -> list[OutboxRow]:
    with core.store.unit() as session:
        return list(session.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars())


def test_opening_a_dispute_enqueues_messages_for_the_other_side_and_the_channel(
    any_core: Core,
) -> None:
    dispute = open_one(any_core)

    rows = outbox(any_core)
    by_recipient = {(r.recipient_kind, r.recipient_id, r.kind): r for r in rows}
    with any_core.store.unit() as session:
        dispute_id = session.execute(
            select(DisputeRow.id).where(DisputeRow.ref == dispute.ref)
        ).scalar_one()

    assert ("person", "ben.carter", "direct") in by_recipient
    assert ("channel", "disputes", "thread_root") in by_recipient
    assert ("person", "amara.okafor", "direct") in by_recipient
    assert all(r.dispute_id == dispute_id and r.status == "pending" for r in rows)
    assert all(r.next_attempt_at == NOW for r in rows)
    to_ben = Message.from_data(by_recipient[("person", "ben.carter", "direct")].payload)
    assert "CS-48213" in dict(to_ben.facts).values()
    assert ActionId.ACKNOWLEDGE in {b.action for b in to_ben.buttons}
    # The channel post names the dispute, never the case or the reasons.
    root = by_recipient[("channel", "disputes", "thread_root")].payload
    assert root["ref"] == dispute.ref
    assert "CS-48213" not in str(root)
    assert "missed appointments" not in str(root)


def test_if_saving_the_opened_dispute_fails_no_dispute_event_or_message_is_kept(
    any_core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = any_core.store
    enqueue = store.enqueue

    def enqueue_then_fail(*args: Any, **kwargs: Any) -> None:
        enqueue(*args, **kwargs)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(store, "enqueue", enqueue_then_fail)
    with pytest.raises(RuntimeError, match="went away"):
        any_core.service.open(details())
    monkeypatch.undo()

    with store.unit() as session:
        assert count(session, DisputeRow.id) == 0
        assert count(session, EventRow.id) == 0
        assert count(session, OutboxRow.id) == 0
        assert count(session, DeadlineRow.id) == 0
    assert open_one(any_core).ref == "WST-2026-0001"  # the reference was not used up
    assert len(outbox(any_core)) >= 2


# --- saved conversations and people seen --------------------------------------------------


def test_flow_progress_is_saved_replaced_and_forgotten(store: Store) -> None:
    state = {"step": "reasons", "answers": {"case_ref": "CS-1", "disagreement_date": "2026-11-25"}}
    with store.unit() as session:
        store.save_flow_state(session, "slack:U123", "intake", state, now=NOW)
        store.save_flow_state(session, "slack:U999", "intake", {"step": "scope"}, now=NOW)

    with store.unit() as session:
        assert store.flow_state(session, "slack:U123", "intake") == state
        assert store.flow_state(session, "slack:U123", "propose") is None
        store.save_flow_state(session, "slack:U123", "intake", {"step": "confirm"}, now=NOW)
    with store.unit() as session:
        assert store.flow_state(session, "slack:U123", "intake") == {"step": "confirm"}
        store.save_flow_state(session, "slack:U123", "intake", None, now=NOW)
        store.save_flow_state(session, "slack:U000", "intake", None, now=NOW)  # nothing to forget
    with store.unit() as session:
        assert store.flow_state(session, "slack:U123", "intake") is None
        assert store.flow_state(session, "slack:U999", "intake") == {"step": "scope"}


def test_people_seen_are_remembered_and_new_facts_merged(store: Store) -> None:
    newcomer = {"id": "jo.bloggs", "name": "Jo Bloggs", "agency": "rwt", "roles": ["practitioner"]}
    with store.unit() as session:
        store.remember_person(session, newcomer, now=NOW)
    with store.unit() as session:
        store.remember_person(session, {"id": "jo.bloggs", "slack_id": "U0JOBLOGGS"}, now=NOW)

    with store.unit() as session:
        seen = store.people_seen(session)

    assert seen == [{**newcomer, "slack_id": "U0JOBLOGGS"}]


def test_a_person_remembered_by_one_replica_is_known_to_a_fresh_one(
    any_core: Core, clock: FakeClock
) -> None:
    any_core.service.remember_person(
        {"id": "jo.bloggs", "name": "Jo Bloggs", "agency": "rwt", "manager": "rosa.delgado"}
    )

    fresh = second_core(any_core, clock)
    try:
        known = fresh.service.person("jo.bloggs")
    finally:
        fresh.store.dispose()

    assert known is not None
    assert (known.name, known.agency, known.manager) == ("Jo Bloggs", "rwt", "rosa.delgado")
    assert any_core.service.person("jo.bloggs") == known


# --- commands through the service ---------------------------------------------------------


def test_a_refusal_is_recorded_as_an_event_and_changes_nothing_else(
    any_core: Core, clock: FakeClock
) -> None:
    ref = open_one(any_core).ref
    before = outbox(any_core)
    clock.advance(timedelta(minutes=30))

    outcome = any_core.service.act(ref, "ellie.shaw", Action.ACKNOWLEDGE)

    assert not outcome.ok
    assert outcome.text == (
        "Sorry, you can't do that: you are not in either agency of this dispute."
    )
    with any_core.store.unit() as session:
        events = any_core.store.events(session, ref)
        dispute = any_core.store.load(session, ref)
    refusal = events[-1]
    assert (refusal.type, refusal.actor, refusal.at) == (
        "ActionRefused",
        "ellie.shaw",
        NOW + timedelta(minutes=30),
    )
    assert refusal.data == {
        "action": "acknowledge",
        "reason": "you are not in either agency of this dispute",
    }
    assert chain_problems(ref, events) == []
    assert dispute.acknowledged_by("receiving") is None
    assert len(outbox(any_core)) == len(before)


def test_someone_not_in_the_directory_is_turned_away_without_touching_the_record(
    any_core: Core,
) -> None:
    ref = open_one(any_core).ref

    outcome = any_core.service.act(ref, "nobody.known", Action.ACKNOWLEDGE)

    assert not outcome.ok
    assert "not in the partnership directory" in outcome.text
    with any_core.store.unit() as session:
        assert [e.type for e in any_core.store.events(session, ref)][-1] == "StepCompleted"


def stale_first(store: Store, stale: Dispute, times: int) -> Callable[..., Dispute]:
    """A `load` that hands out a stale copy `times` times, then the real thing."""
    real = store.load
    handed = {"n": 0}

    def load(session: Session, ref: str, *, lock: bool = False) -> Dispute:
        if handed["n"] < times:
            handed["n"] += 1
            return stale
        return real(session, ref, lock=lock)

    return load


def test_act_retries_when_another_replica_changed_the_dispute_meanwhile(
    any_core: Core, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = open_one(any_core).ref
    other = second_core(any_core, clock)
    try:
        with any_core.store.unit() as session:
            stale = any_core.store.load(session, ref)
        clock.advance(timedelta(minutes=10))
        assert other.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
        monkeypatch.setattr(any_core.store, "load", stale_first(any_core.store, stale, 1))

        clock.advance(timedelta(minutes=10))
        outcome = any_core.service.act(ref, "tom.hadley", Action.ADD_NOTE, text="Called Rosa.")
    finally:
        other.store.dispose()

    assert outcome.ok, outcome.text
    monkeypatch.undo()
    with any_core.store.unit() as session:
        events = any_core.store.events(session, ref)
        final = any_core.store.load(session, ref)
    assert [e.type for e in events][-2:] == ["Acknowledged", "NoteAdded"]
    assert chain_problems(ref, events) == []
    assert final.acknowledged_by("receiving") == ("ben.carter", NOW + timedelta(minutes=10))
    assert final.notes == 1


def test_act_gives_up_with_a_plain_message_when_the_conflict_persists(
    any_core: Core, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = open_one(any_core).ref
    with any_core.store.unit() as session:
        stale = any_core.store.load(session, ref)
    assert any_core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    monkeypatch.setattr(any_core.store, "load", stale_first(any_core.store, stale, 99))

    outcome = any_core.service.act(ref, "tom.hadley", Action.ADD_NOTE, text="Called Rosa.")

    assert not outcome.ok
    assert outcome.text == (
        "Someone else changed this dispute at the same moment; please try again."
    )
    monkeypatch.undo()
    with any_core.store.unit() as session:
        assert [e.type for e in any_core.store.events(session, ref)][-1] == "Acknowledged"


def test_a_reading_unit_sees_a_snapshot_without_waiting_for_a_writer(any_core: Core) -> None:
    # A write transaction is held open in another thread (on SQLite it holds the one write
    # lock). A reading unit still reads, at once, the state before that write.
    store = any_core.store
    dispute = open_one(any_core)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.unit() as session:
            row = session.execute(select(DisputeRow).where(DisputeRow.ref == dispute.ref))
            row.scalar_one().category = "changed"
            session.flush()
            holding.set()
            assert release.wait(timeout=30)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        read: list[str] = []

        def reader() -> None:
            with store.reading() as session:
                found = select(DisputeRow.category).where(DisputeRow.ref == dispute.ref)
                read.append(session.execute(found).scalar_one())

        reading = threading.Thread(target=reader)
        reading.start()
        # Done while the writer still holds its transaction: it did not queue behind it (a
        # unit that waited would be held for the whole 30-second busy timeout).
        reading.join(timeout=10)
        assert not reading.is_alive() and read == [dispute.details.category] != ["changed"]
    finally:
        release.set()
        thread.join()


def test_a_reading_unit_refuses_to_write(store: Store) -> None:
    with pytest.raises(RuntimeError, match="may not write"), store.reading() as session:
        session.add(ScheduledRunRow(key="x", done_at=NOW))
    with store.unit() as session:
        assert not store.has_run(session, "x")


def note_by_tom(core: Core, dispute: Dispute) -> None:
    """Tom Hadley adds a note to the dispute (in memory: the caller saves it)."""
    directory = core.service.directory
    tom = directory.person("tom.hadley")
    dispute.add_note(tom, directory, core.service.partnership.calendar, NOW, text="Hi")


def test_a_reading_unit_refuses_a_save_and_nothing_changes(any_core: Core) -> None:
    # A save writes with Core statements, not the unit of work: refused all the same.
    store = any_core.store
    ref = open_one(any_core).ref
    with pytest.raises(RuntimeError, match="may not write"), store.reading() as session:
        dispute = store.load(session, ref)
        note_by_tom(any_core, dispute)
        store.save(session, dispute, now=NOW)
    with store.reading() as session:
        assert "NoteAdded" not in [e.type for e in store.events(session, ref)]


def test_a_save_whose_row_changed_under_it_is_a_conflict(any_core: Core) -> None:
    # The UPDATE names the version it read: if the row has another by then (here changed in
    # the same transaction, behind the store's back), nothing is written and it says so.
    store = any_core.store
    ref = open_one(any_core).ref
    with pytest.raises(Conflict), store.unit() as session:
        dispute = store.load(session, ref, lock=True)
        session.execute(update(DisputeRow).where(DisputeRow.ref == ref).values(version=99))
        note_by_tom(any_core, dispute)
        store.save(session, dispute, now=NOW)
    with store.reading() as session:
        assert "NoteAdded" not in [e.type for e in store.events(session, ref)]
        assert store.load(session, ref).version == 1
