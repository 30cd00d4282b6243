"""Two replicas, each its own OS process with its own engine, against one real PostgreSQL:
they open disputes, fire their timers and send their messages at the same moments, and every
nudge and message happens exactly once (FOR UPDATE SKIP LOCKED, row locks on disputes)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import START, make_core
from fakes.platform import FakePlatformServer, Shown
from replica import Replica
from sqlalchemy import select

from bot.app import Core
from bot.clock import FakeClock
from store.models import DisputeRow, EventRow, OutboxRow

pytestmark = pytest.mark.postgres

DISPUTES_EACH = 15
# Opened on Thursday; Monday morning brings the reminders; Wednesday morning finds each
# dispute due (since Tuesday) and breached, and Wolverhampton escalates two hours later.
MOMENTS = [
    START,
    datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
    datetime(2026, 12, 2, 9, 0, tzinfo=UTC),
    datetime(2026, 12, 2, 11, 30, tzinfo=UTC),
]
TIMER_EVENTS = {"ReminderSent", "StepDueToday", "DeadlineBreached", "StageEscalated"}


@pytest.fixture
def core(pg_url: str) -> Iterator[Core]:
    built = make_core(pg_url, FakeClock(START))  # brings the schema up to date
    yield built
    built.store.dispose()


def test_two_replicas_share_the_work_and_do_every_nudge_and_message_exactly_once(
    core: Core, pg_url: str, tmp_path: Path
) -> None:
    did: dict[str, Counter[str]] = defaultdict(Counter)
    with FakePlatformServer() as api:
        replicas = [
            Replica(
                tmp_path,
                db=pg_url,
                api=api.url,
                at=START,
                name=name,
                batch=10,  # small batches, so the two interleave
                commands=True,
            )
            for name in ("a", "b")
        ]
        try:
            for replica in replicas:
                assert replica.readline(timeout=60) == "ready"
            # At each moment both are released together, and both work until nothing is left.
            for moment in MOMENTS:
                for replica in replicas:
                    replica.go(moment, open=DISPUTES_EACH if moment == START else 0)
                for replica in replicas:
                    report = replica.report()
                    did[replica.name].update(
                        opened=len(report["opened"]), fired=report["fired"], sent=report["sent"]
                    )
            for replica in replicas:
                replica.result()
        finally:
            for replica in replicas:
                replica.stop()
        shown, calls = api.ledger.shown, api.ledger.calls

    with core.store.unit() as session:
        refs = list(session.execute(select(DisputeRow.ref).order_by(DisputeRow.ref)).scalars())
        outbox = list(session.execute(select(OutboxRow)).scalars())
        events = session.execute(select(DisputeRow.ref, EventRow.type).join(DisputeRow)).all()

    # Every dispute opened once, with its own reference, by whichever replica opened it.
    assert refs == [f"WST-2026-{n:04d}" for n in range(1, 2 * DISPUTES_EACH + 1)]
    assert did["a"]["opened"] == did["b"]["opened"] == DISPUTES_EACH

    # Every timer went off once per dispute, whichever replica got there first.
    timers: dict[str, Counter[str]] = defaultdict(Counter)
    for ref, event_type in events:
        if event_type in TIMER_EVENTS:
            timers[ref][event_type] += 1
    assert {ref: dict(c) for ref, c in timers.items()} == {
        ref: dict.fromkeys(TIMER_EVENTS, 1) for ref in refs
    }
    assert did["a"]["fired"] + did["b"]["fired"] == len(refs) * len(TIMER_EVENTS)
    # Monday's digest (every dispute due within a working day) went once, from two replicas.
    assert [r.key for r in outbox if r.kind == "digest"] == ["digest:wst-example:2026-11-30"]

    # Every message sent exactly once: one call per message, nothing re-sent or deduplicated.
    assert {r.status for r in outbox} == {"sent"}
    assert Counter(s.key for s in shown) == Counter(r.key for r in outbox)
    assert len(calls) == len(outbox) and all(not c.maybe_sent for c in calls)
    assert did["a"]["sent"] + did["b"]["sent"] == len(outbox)
    # ... and both replicas did some of the sending.
    by_sender = Counter(s.sender for s in shown)
    assert by_sender["a"] > 0 and by_sender["b"] > 0, by_sender

    # Each dispute's thread kept its order across the replicas: the root first, every later
    # channel post in its thread.
    channel: dict[str, list[Shown]] = defaultdict(list)
    for s in shown:
        if s.recipient.kind == "channel" and s.kind in ("thread_root", "thread"):
            channel[s.key.split(":")[0]].append(s)
    assert sorted(channel) == refs
    for posts in channel.values():
        root, *later = posts
        assert root.kind == "thread_root" and root.thread_id is None
        assert later and all(p.thread_id == root.message_id for p in later)
