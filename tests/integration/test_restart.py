"""A bot process killed with SIGKILL in the middle of sending loses nothing: the next one, once
the dead one's lease has lapsed, sends everything that had not gone, shows nothing twice, and
sends each overdue nudge once. Real processes, on SQLite (a file) and on PostgreSQL."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import START, dispute_details, make_core
from fakes.platform import FakePlatformServer, HttpPlatform
from replica import Replica
from sqlalchemy import select

from bot.app import Core
from bot.clock import FakeClock
from bot.outbox import LEASE
from store.models import DisputeRow, EventRow, OutboxRow

DISPUTES = 5
# Nobody ran the bot over the weekend: on Monday morning every reminder is overdue.
MONDAY = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
LAPSED = LEASE + timedelta(seconds=1)


@pytest.fixture
def core(db_url: str) -> Iterator[Core]:
    built = make_core(db_url, FakeClock(START))  # brings the schema up to date
    yield built
    built.store.dispose()


@pytest.fixture
def api() -> Iterator[FakePlatformServer]:
    with FakePlatformServer() as server:
        yield server


def open_disputes(core: Core) -> list[str]:
    refs = []
    for _ in range(DISPUTES):
        outcome = core.service.open(dispute_details())
        assert outcome.ok and outcome.dispute is not None, outcome.text
        refs.append(outcome.dispute.ref)
    return refs


def outbox(core: Core) -> list[OutboxRow]:
    with core.store.unit() as session:
        return list(session.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars())


def kill_mid_send(tmp_path: Path, core: Core, api: FakePlatformServer, at: datetime) -> None:
    """Start a bot at `at`; once a send has reached the platform and hangs, SIGKILL it."""
    replica = Replica(tmp_path, db=core.store.url, api=api.url, at=at, name="killed")
    try:
        assert api.hung.wait(timeout=60), f"no send hung:\n{replica.stderr}"
        assert replica.kill() == -signal.SIGKILL
    finally:
        replica.stop()
        api.release()


def restart(tmp_path: Path, core: Core, api: FakePlatformServer, at: datetime) -> dict[str, Any]:
    """A new bot at `at`, run until it has nothing left to do; what it did."""
    replica = Replica(tmp_path, db=core.store.url, api=api.url, at=at, name="restarted")
    try:
        return replica.result()
    finally:
        replica.stop()


def test_a_sender_killed_mid_batch_loses_nothing_and_its_successor_shows_nothing_twice(
    core: Core, api: FakePlatformServer, tmp_path: Path
) -> None:
    open_disputes(core)
    queued = [r.key for r in outbox(core)]
    assert len(queued) == 4 * DISPUTES

    api.hang_at(3)  # the third message reaches the platform, and the answer never comes
    kill_mid_send(tmp_path, core, api, START)
    hung = api.ledger.calls[2].key
    status = {r.key: r.status for r in outbox(core)}
    in_flight = {k for k, s in status.items() if s == "sending"}
    assert Counter(status.values()) == {"sent": 2, "sending": len(queued) - 2}
    assert hung in in_flight

    report = restart(tmp_path, core, api, START + LAPSED)
    assert report["sent"] == len(in_flight)

    # Nothing lost, nothing shown twice.
    assert {r.status for r in outbox(core)} == {"sent"}
    assert sorted(api.ledger.keys_shown()) == sorted(queued)
    assert api.ledger.duplicates() == []
    # Only what was in flight was sent again as maybe-sent; only the hung one was already there.
    resent = [c for c in api.ledger.calls if c.maybe_sent]
    assert {c.key for c in resent} == in_flight and len(resent) == len(in_flight)
    assert [c.key for c in api.ledger.calls if c.outcome == "deduplicated"] == [hung]


async def test_after_a_kill_mid_send_every_overdue_nudge_goes_out_once(
    core: Core, api: FakePlatformServer, tmp_path: Path
) -> None:
    refs = open_disputes(core)
    platform = HttpPlatform(api.url, sender="thursday")
    try:
        assert (await core.dispatcher([platform]).run_once()).sent == 4 * DISPUTES
    finally:
        await platform.close()
    opening = len(api.ledger.shown)

    api.hang_at(4)
    kill_mid_send(tmp_path, core, api, MONDAY)
    # The timers that went off are recorded with their disputes, with their messages queued.
    with core.store.unit() as session:
        fired = session.execute(
            select(DisputeRow.ref).join(EventRow).where(EventRow.type == "ReminderSent")
        ).scalars()
        assert sorted(fired) == refs
    nudges = [r for r in outbox(core)[4 * DISPUTES :] if r.kind != "digest"]
    assert len(nudges) == 2 * DISPUTES  # Ben's reminder and the thread's, for each dispute
    in_flight = {r.key for r in outbox(core) if r.status == "sending"}
    assert in_flight & {r.key for r in nudges}

    report = restart(tmp_path, core, api, MONDAY + LAPSED)
    assert report["fired"] == 0  # nothing goes off a second time

    assert {r.status for r in outbox(core)} == {"sent"}
    assert api.ledger.duplicates() == []
    assert Counter(api.ledger.keys_shown()[opening:]) == Counter(
        r.key for r in outbox(core)[4 * DISPUTES :]
    )
    assert {c.key for c in api.ledger.calls if c.maybe_sent} == in_flight
    reminders = [s for s in api.ledger.to("ben.carter") if "Reminder" in s.text]
    assert sorted(s.key.split(":")[0] for s in reminders) == refs
    with core.store.unit() as session:
        count = Counter(
            session.execute(
                select(DisputeRow.ref).join(EventRow).where(EventRow.type == "ReminderSent")
            ).scalars()
        )
    assert count == dict.fromkeys(refs, 1)
