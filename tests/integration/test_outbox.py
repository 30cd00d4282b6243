"""The outbox dispatcher against a fake platform, on SQLite and PostgreSQL: thread order,
retries with backoff and Retry-After, parking with an alert to the admins, lapsed leases and
idempotent re-sends. Time moves only on the FakeClock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import dispute_details, make_core
from fakes.platform import FakePlatform
from sqlalchemy import event, select

from bot.app import Core
from bot.clock import FakeClock
from bot.disputes import Action
from bot.messages import Message, Recipient
from bot.outbox import ALERT_PREFIX, BASE_DELAY, LEASE, MAX_ATTEMPTS, MAX_DELAY, Dispatcher
from store.models import OutboxRow

ADMINS = ["george.ellis", "helen.marsh"]  # the example directory's people with role admin
SECOND = timedelta(seconds=1)


@pytest.fixture
def core(db_url: str, clock: FakeClock) -> Iterator[Core]:
    built = make_core(db_url, clock)
    yield built
    built.store.dispose()


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
def dispatcher(core: Core, platform: FakePlatform) -> Dispatcher:
    return core.dispatcher([platform])


def open_dispute(core: Core) -> str:
    outcome = core.service.open(dispute_details())
    assert outcome.ok and outcome.dispute is not None, outcome.text
    return outcome.dispute.ref


def rows(core: Core) -> list[OutboxRow]:
    with core.store.unit() as session:
        return list(session.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars())


def row(core: Core, key: str) -> OutboxRow:
    (found,) = [r for r in rows(core) if r.key == key]
    return found


def key_of(core: Core, ref: str, kind: str, recipient: str | None = None) -> str:
    """The key of a dispute's one queued message of this kind (and recipient)."""
    (key,) = [
        r.key
        for r in rows(core)
        if r.payload["ref"] == ref
        and r.kind == kind
        and (recipient is None or r.recipient_id == recipient)
    ]
    return key


def to_person(person_id: str) -> Callable[[Message], bool]:
    return lambda m: m.recipient.kind == "person" and m.recipient.id == person_id


def root_of(ref: str) -> Callable[[Message], bool]:
    return lambda m: m.kind == "thread_root" and m.ref == ref


def alert_rows(core: Core) -> list[OutboxRow]:
    return [r for r in rows(core) if r.key.startswith(ALERT_PREFIX)]


# --- order ------------------------------------------------------------------------------------


async def test_an_opened_dispute_is_posted_root_first_and_its_updates_go_in_the_roots_thread(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher
) -> None:
    ref = open_dispute(core)
    report = await dispatcher.run_once()
    assert (report.sent, report.deferred, report.retried, report.parked) == (4, 0, 0, 0)
    root = platform.shown[0]
    assert (root.kind, root.recipient, root.thread_id) == (
        "thread_root",
        Recipient.channel(),
        None,
    )
    (update,) = platform.in_channel()[1:]
    assert update.kind == "thread" and update.thread_id == root.message_id
    assert [s.recipient.id for s in platform.shown if s.recipient.kind == "person"] == [
        "ben.carter",
        "amara.okafor",
    ]
    with core.store.unit() as session:
        assert core.store.thread_root(session, ref, platform.name) == root.message_id

    # A later change to the dispute edits the root and is posted in its thread.
    assert core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    assert (await dispatcher.run_once()).sent >= 1
    edit, reply = platform.in_channel()[2:]
    assert (edit.kind, edit.message_id) == ("thread_root", root.message_id)
    assert (reply.kind, reply.thread_id) == ("thread", root.message_id)
    with core.store.unit() as session:
        assert core.store.outbox_counts(session) == {"sent": len(platform.shown)}
    assert platform.duplicates() == []


async def test_a_pass_takes_the_write_lock_once_to_claim_and_once_per_message_sent(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher
) -> None:
    # Finding a message's thread is a read: on SQLite it does not queue for the one write
    # lock behind every click and tick. Only the claim and each result are written.
    open_dispute(core)
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith(("BEGIN IMMEDIATE", "UPDATE", "INSERT", "DELETE")):
            writes.append(statement.split()[0] + (" IMMEDIATE" if "IMMEDIATE" in statement else ""))

    event.listen(core.store.engine, "before_cursor_execute", record)
    try:
        report = await dispatcher.run_once()
    finally:
        event.remove(core.store.engine, "before_cursor_execute", record)
    assert report.sent == 4
    # Claim: one transaction; each message's result: one UPDATE (plus the thread's root once).
    assert writes.count("UPDATE") == 1 + 4
    if core.store.engine.dialect.name == "sqlite":
        assert writes.count("BEGIN IMMEDIATE") == 1 + 4


async def test_a_thread_post_waits_while_another_sender_holds_its_root(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    with core.store.unit() as session:
        (held,) = core.store.claim_messages(
            session, now=clock.now(), lease=LEASE, worker="other-replica", limit=1
        )
    assert held.message.kind == "thread_root"

    report = await dispatcher.run_once()
    assert (report.sent, report.deferred) == (2, 1)  # the two direct messages; not the reply
    assert platform.in_channel() == []

    # The other sender posts the root and records it; then the reply goes, into its thread.
    delivered = await platform.send(held.message, thread_id=None)
    with core.store.unit() as session:
        assert core.store.finish_message(
            session, held.id, worker="other-replica", status="sent", now=clock.now()
        )
        assert delivered.thread_id is not None
        core.store.save_thread_root(session, ref, platform.name, "disputes", delivered.thread_id)
    assert (await dispatcher.run_once()).sent == 1
    root, reply = platform.in_channel()
    assert reply.kind == "thread" and reply.thread_id == root.message_id
    assert row(core, reply.key).attempts == 1  # waiting behind the root used no attempt


async def test_while_a_thread_root_fails_its_later_posts_wait_but_other_messages_go(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    first, second = open_dispute(core), open_dispute(core)
    platform.fail_next(3, match=root_of(first))
    first_reply = key_of(core, first, "thread")

    report = await dispatcher.run_once()
    assert (report.sent, report.retried, report.deferred) == (6, 1, 1)
    shown = set(platform.keys_shown())
    assert {key_of(core, first, "direct", p) for p in ("ben.carter", "amara.okafor")} <= shown
    assert {r.key for r in rows(core) if r.payload["ref"] == second} <= shown
    assert platform.calls_for(first_reply) == []

    # Three failures, each retried after its backoff; the reply is never tried before the root.
    for _ in range(10):
        clock.advance(MAX_DELAY)
        await dispatcher.run_once()
    posted = [s for s in platform.in_channel() if s.key.startswith(first)]
    assert [s.kind for s in posted] == ["thread_root", "thread"]
    assert posted[1].thread_id == posted[0].message_id
    assert len(platform.calls_for(posted[0].key)) == 4
    assert len(platform.calls_for(first_reply)) == 1
    assert row(core, first_reply).attempts == 1
    assert platform.duplicates() == []


async def test_messages_waiting_behind_a_failing_root_do_not_hold_up_everyone_elses(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    first, second = open_dispute(core), open_dispute(core)
    platform.fail_next(1, match=root_of(first))
    await dispatcher.run_once(limit=3)  # the first dispute's root fails; its DMs go
    # The first dispute's reply now stands before every message of the second. It waits
    # for its root's next try instead of being claimed again at the head of every batch.
    for _ in range(5):
        await dispatcher.run_once(limit=1)
    shown = set(platform.keys_shown())
    assert {r.key for r in rows(core) if r.payload["ref"] == second} <= shown
    assert key_of(core, first, "thread") not in shown

    clock.advance(BASE_DELAY)
    assert (await dispatcher.run_once()).sent == 2
    assert [s.kind for s in platform.in_channel() if s.key.startswith(first)] == [
        "thread_root",
        "thread",
    ]


# --- retries ----------------------------------------------------------------------------------


async def test_a_failed_send_is_retried_only_once_its_backoff_has_passed(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    ben = key_of(core, ref, "direct", "ben.carter")
    platform.fail_next(2, match=to_person("ben.carter"))
    start = clock.now()

    report = await dispatcher.run_once()
    assert (report.sent, report.retried) == (3, 1)
    failed = row(core, ben)
    assert (failed.status, failed.attempts, failed.last_error) == ("pending", 1, "server error")
    assert failed.next_attempt_at == start + BASE_DELAY

    clock.advance(BASE_DELAY - SECOND)
    assert (await dispatcher.run_once()).retried == 0
    assert len(platform.calls_for(ben)) == 1  # nothing before the backoff

    clock.advance(SECOND)
    assert (await dispatcher.run_once()).retried == 1  # the second failure: twice the wait
    assert row(core, ben).next_attempt_at == clock.now() + 2 * BASE_DELAY
    clock.advance(2 * BASE_DELAY - SECOND)
    await dispatcher.run_once()
    assert len(platform.calls_for(ben)) == 2

    clock.advance(SECOND)
    assert (await dispatcher.run_once()).sent == 1
    assert [s.key for s in platform.to("ben.carter")] == [ben]
    assert row(core, ben).status == "sent"


async def test_a_429_retry_after_is_honoured_to_the_second(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    ben = key_of(core, ref, "direct", "ben.carter")
    platform.rate_limit_next(120, times=2, match=to_person("ben.carter"))

    for _ in range(2):  # a second 429 waits its Retry-After too, not a growing backoff
        failed_at = clock.now()
        assert (await dispatcher.run_once()).retried == 1
        assert row(core, ben).next_attempt_at == failed_at + timedelta(seconds=120)
        clock.advance(timedelta(seconds=119))
        await dispatcher.run_once()
        assert platform.to("ben.carter") == []
        clock.advance(SECOND)
    assert len(platform.calls_for(ben)) == 2

    assert (await dispatcher.run_once()).sent == 1
    assert [s.key for s in platform.to("ben.carter")] == [ben]


async def test_a_send_that_timed_out_after_arriving_is_not_shown_again(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    ben, amara = (key_of(core, ref, "direct", p) for p in ("ben.carter", "amara.okafor"))
    # Ben's message reached the platform but the answer was lost; Amara's never got there.
    platform.time_out_next(arrived=True, match=to_person("ben.carter"))
    platform.time_out_next(arrived=False, match=to_person("amara.okafor"))
    assert (await dispatcher.run_once()).retried == 2

    clock.advance(BASE_DELAY)
    assert (await dispatcher.run_once()).sent == 2
    assert [s.key for s in platform.to("ben.carter")] == [ben]
    assert [s.key for s in platform.to("amara.okafor")] == [amara]
    # The retries said the message might already be there; Ben's was, Amara's was not.
    assert [(c.maybe_sent, c.outcome) for c in platform.calls_for(ben)][-1] == (
        True,
        "deduplicated",
    )
    assert [(c.maybe_sent, c.outcome) for c in platform.calls_for(amara)][-1] == (True, "shown")
    assert platform.duplicates() == []


async def test_an_unexpected_adapter_error_is_retried_and_the_rest_of_the_batch_still_goes(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    ben = key_of(core, ref, "direct", "ben.carter")
    platform.fail_next(1, reason="adapter bug", match=to_person("ben.carter"), error=KeyError)

    report = await dispatcher.run_once()
    assert (report.sent, report.retried) == (3, 1)
    failed = row(core, ben)
    assert failed.status == "pending" and "KeyError" in (failed.last_error or "")
    clock.advance(BASE_DELAY)
    assert (await dispatcher.run_once()).sent == 1
    assert [s.key for s in platform.to("ben.carter")] == [ben]


# --- parking ----------------------------------------------------------------------------------


async def test_after_max_attempts_a_message_is_parked_and_each_admin_is_alerted(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    ben = key_of(core, ref, "direct", "ben.carter")
    platform.fail_next(100, reason="service unavailable", match=to_person("ben.carter"))

    for _ in range(MAX_ATTEMPTS + 3):
        await dispatcher.run_once()
        clock.advance(MAX_DELAY)  # always past the backoff, however long it has grown

    assert len(platform.calls_for(ben)) == MAX_ATTEMPTS
    parked = row(core, ben)
    assert (parked.status, parked.attempts) == ("parked", MAX_ATTEMPTS)
    assert parked.last_error == "service unavailable"
    assert platform.to("ben.carter") == []
    alerts = [s for s in platform.shown if s.key.startswith(ALERT_PREFIX)]
    assert sorted(s.recipient.id for s in alerts) == ADMINS
    for alert in alerts:
        assert "ben.carter" in alert.text and ref in alert.text
        assert "service unavailable" in alert.text
    assert len(alert_rows(core)) == len(ADMINS)


async def test_a_permanent_failure_parks_at_once(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    ben = key_of(core, ref, "direct", "ben.carter")
    platform.fail_permanently_next("user_not_found", match=to_person("ben.carter"))

    report = await dispatcher.run_once()
    assert (report.parked, report.retried) == (1, 0)
    parked = row(core, ben)
    assert (parked.status, parked.attempts, parked.last_error) == ("parked", 1, "user_not_found")
    # The alerts were queued with the parking, and go on the next pass.
    assert sorted(r.recipient_id for r in alert_rows(core)) == ADMINS
    await dispatcher.run_once()
    assert sorted(s.recipient.id for s in platform.shown if s.key.startswith(ALERT_PREFIX)) == (
        ADMINS
    )

    clock.advance(timedelta(days=2))
    await dispatcher.run_once()
    assert len(platform.calls_for(ben)) == 1  # never tried again


async def test_an_alert_that_itself_fails_is_parked_without_alerting_again(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    platform.fail_permanently_next("user_not_found", match=to_person("ben.carter"))
    await dispatcher.run_once()
    platform.fail_permanently_next("user_disabled", match=to_person("helen.marsh"))

    report = await dispatcher.run_once()
    assert (report.sent, report.parked) == (1, 1)
    for _ in range(3):
        clock.advance(MAX_DELAY)
        await dispatcher.run_once()

    alerts = alert_rows(core)
    assert len(alerts) == len(ADMINS)  # no alert about the alert
    status = {r.recipient_id: r.status for r in alerts}
    assert status == {"helen.marsh": "parked", "george.ellis": "sent"}
    assert [s.recipient.id for s in platform.shown if s.key.startswith(ALERT_PREFIX)] == [
        "george.ellis"
    ]
    assert ref in platform.to("george.ellis")[0].text


async def test_a_message_no_platform_can_reach_is_parked_and_the_admins_told(
    core: Core, clock: FakeClock
) -> None:
    platform = FakePlatform(reach=lambda m: not to_person("ben.carter")(m))
    dispatcher = core.dispatcher([platform])
    ref = open_dispute(core)
    ben = key_of(core, ref, "direct", "ben.carter")

    report = await dispatcher.run_once()
    assert (report.sent, report.parked) == (3, 1)
    assert platform.calls_for(ben) == []
    parked = row(core, ben)
    assert parked.status == "parked" and "no platform can reach" in (parked.last_error or "")
    await dispatcher.run_once()
    alerts = [s for s in platform.shown if s.key.startswith(ALERT_PREFIX)]
    assert sorted(s.recipient.id for s in alerts) == ADMINS
    assert all("ben.carter" in s.text and "no platform can reach" in s.text for s in alerts)


async def test_each_message_goes_through_the_first_platform_that_can_reach_its_recipient(
    core: Core,
) -> None:
    channels = FakePlatform("chat", reach=lambda m: m.recipient.kind == "channel")
    people = FakePlatform("mail")
    dispatcher = core.dispatcher([channels, people])
    open_dispute(core)
    assert (await dispatcher.run_once()).sent == 4
    assert [s.kind for s in channels.shown] == ["thread_root", "thread"]
    assert channels.shown[1].thread_id == channels.shown[0].message_id
    assert sorted(s.recipient.id for s in people.shown) == ["amara.okafor", "ben.carter"]


# --- senders that die -------------------------------------------------------------------------


async def test_a_lapsed_lease_is_claimed_again_as_maybe_sent_and_shown_once(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    ref = open_dispute(core)
    with core.store.unit() as session:
        batch = core.store.claim_messages(
            session, now=clock.now(), lease=LEASE, worker="killed", limit=100
        )
    assert len(batch) == 4 and not any(c.maybe_sent for c in batch)
    # The dead sender got the root and Ben's message out, and died before recording either.
    for claimed in batch[:2]:
        await platform.send(claimed.message, thread_id=None, maybe_sent=False)

    assert (await dispatcher.run_once()).sent == 0  # the lease still holds
    clock.advance(LEASE)
    assert (await dispatcher.run_once()).sent == 0  # ... to the end
    clock.advance(SECOND)
    report = await dispatcher.run_once()
    assert report.sent == 4

    keys = sorted(c.message.key for c in batch)
    assert sorted(platform.keys_shown()) == keys and platform.duplicates() == []
    again = [c for c in platform.calls if c.key in keys][2:]
    assert len(again) == 4 and all(c.maybe_sent for c in again)
    assert [c.outcome for c in again[:2]] == ["deduplicated", "deduplicated"]
    # The root's thread was learnt from the platform, so the reply still went into it.
    root, reply = platform.in_channel()
    assert reply.thread_id == root.message_id
    with core.store.unit() as session:
        assert core.store.thread_root(session, ref, platform.name) == root.message_id
    assert {row(core, k).status for k in keys} == {"sent"}


async def test_a_message_whose_sender_dies_every_time_is_parked_in_the_end(
    core: Core, platform: FakePlatform, dispatcher: Dispatcher, clock: FakeClock
) -> None:
    poison = Message(Recipient.person("ben.carter"), "Hello", kind="direct", key="poison")
    with core.store.unit() as session:
        core.store.enqueue(session, [poison], now=clock.now())
    for i in range(MAX_ATTEMPTS):
        with core.store.unit() as session:
            (claimed,) = core.store.claim_messages(
                session, now=clock.now(), lease=LEASE, worker=f"killed-{i}", limit=10
            )
        assert claimed.maybe_sent == (i > 0)
        clock.advance(LEASE + SECOND)

    report = await dispatcher.run_once()
    assert report.parked == 1 and platform.calls_for("poison") == []
    assert row(core, "poison").status == "parked"
    await dispatcher.run_once()
    assert sorted(s.recipient.id for s in platform.shown if s.key.startswith(ALERT_PREFIX)) == (
        ADMINS
    )
