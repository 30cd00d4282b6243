"""The digest loads only the disputes due within its horizon and counts the rest: what it says
is exactly what it said when it rebuilt every open dispute, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import dispute_details as details

from bot.app import Core
from bot.clock import FakeClock
from bot.digest import build_digest, horizon
from bot.disputes import Action
from bot.messages import Message


def every_open_dispute(core: Core, now: datetime) -> Message:
    """The digest as it was built before: from every open dispute, rebuilt."""
    with core.store.unit() as session:
        disputes = core.store.open_disputes(session, core.partnership.id)
    return build_digest(disputes, core.service.notices(), now)


def test_the_digest_says_what_it_said_when_it_read_every_open_dispute(
    any_core: Core, clock: FakeClock
) -> None:
    core = any_core
    refs = []
    # Opened over two weeks, some on the other side's agency, so deadlines fall on many days.
    for day in range(10):
        clock.set(datetime(2026, 11, 26, 10, 0, tzinfo=UTC) + timedelta(days=day, hours=day % 3))
        other = {"receiving_agency": "wmp", "receiving_person": None} if day % 2 else {}
        outcome = core.service.open(details(case_ref=f"CS-3000{day:02d}", **other))
        assert outcome.ok and outcome.dispute is not None, outcome.text
        refs.append(outcome.dispute.ref)
    withdrawn = core.service.act(refs[1], "amara.okafor", Action.WITHDRAW, reason="Sorted out.")
    assert withdrawn.ok, withdrawn.text
    proposed = core.service.act(
        refs[2], "amara.okafor", Action.PROPOSE_RESOLUTION, outcome="A strategy discussion."
    )
    assert proposed.ok, proposed.text  # still open, awaiting the other side

    with core.store.unit() as session:
        due = [d.next_due.due_at for d in core.store.open_disputes(session, core.partnership.id)]
    assert all(due)
    calendar = core.partnership.calendar
    start = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    # A deadline exactly on the horizon is listed, one a microsecond past it is not: the
    # moments that put a deadline on the horizon, and a microsecond before each.
    fine = [start + timedelta(minutes=30 * i) for i in range(1200)]
    edges = list({horizon(calendar, m): m for m in fine if horizon(calendar, m) in due}.values())
    assert edges, "no moment puts a deadline exactly on the horizon"
    tiny = timedelta(microseconds=1)
    moments = [*fine[::8], *edges, *(m - tiny for m in edges)]
    listed = 0
    for now in moments:
        fast, slow = core.service.digest_message(now), every_open_dispute(core, now)
        # Disputes due at the same moment: see the test below (before, in the database's order).
        assert (fast.text, sorted(fast.facts), fast.recipient, fast.kind) == (
            slow.text,
            sorted(slow.facts),
            slow.recipient,
            slow.kind,
        ), now
        assert [due for _, due in fast.facts] == [due for _, due in slow.facts], now
        listed += len(fast.facts)
    assert listed > 0
    assert "9 open in all" in core.service.digest_message(moments[-1]).text


def test_only_the_disputes_due_by_the_horizon_are_loaded(core: Core, clock: FakeClock) -> None:
    first = core.service.open(details()).dispute
    clock.set(datetime(2027, 1, 4, 10, 0, tzinfo=UTC))
    later = core.service.open(details(case_ref="CS-300001")).dispute
    assert first is not None and later is not None
    assert first.next_due is not None and later.next_due is not None
    due_by = first.next_due.due_at
    with core.store.unit() as session:
        near, total = core.store.open_disputes_due_by(session, core.partnership.id, due_by)
        none, _ = core.store.open_disputes_due_by(
            session, core.partnership.id, due_by - timedelta(microseconds=1)
        )
        elsewhere = core.store.open_disputes_due_by(session, "another-partnership", due_by)
    assert [d.ref for d in near] == [first.ref] and total == 2
    assert none == []
    assert elsewhere == ([], 0)


def test_disputes_due_at_the_same_moment_are_listed_in_the_order_they_were_opened(
    any_core: Core, clock: FakeClock
) -> None:
    refs = []
    for n in range(6):
        outcome = any_core.service.open(details(case_ref=f"CS-4000{n:02d}"))
        assert outcome.ok and outcome.dispute is not None
        refs.append(outcome.dispute.ref)
    # Moved around, so that the table's physical order is not the order they were opened in.
    for ref in refs[::2]:
        assert any_core.service.act(ref, "amara.okafor", Action.ADD_NOTE, text="Called.").ok
    digest = any_core.service.digest_message(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    assert [key for key, _ in digest.facts] == [f"Stage 1 - {ref}" for ref in refs]
