"""Replays and races, on SQLite and on PostgreSQL: the same signed request sent again, the same
button pressed by two managers at once, two replicas ticking at the same moment. Each has
exactly one effect."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_core
from fakes.slack_signing import signed_headers, view_submission_body, view_submission_payload
from slackbot import SECRET, SlackBot, intake_values, slack_bot, slack_id_of, text
from sqlalchemy import func, select

from bot.app import Core
from bot.clock import FakeClock
from bot.disputes import Action, DisputeDetails
from store.models import OutboxRow

AMARA, BEN = slack_id_of("amara.okafor"), slack_id_of("ben.carter")
TOM, ROSA, GRACE = (
    slack_id_of("tom.hadley"),
    slack_id_of("rosa.delgado"),
    slack_id_of("grace.mensah"),
)


def events(core: Core, ref: str) -> list[str]:
    with core.store.unit() as session:
        return [e.type for e in core.store.events(session, ref)]


def details(core: Core) -> DisputeDetails:
    return DisputeDetails(
        raised_by="amara.okafor",
        raising_agency="cwc-childrens",
        receiving_agency="rwt",
        receiving_person="ben.carter",
        category="threshold",
        case_ref="CS-204611",
        decision="The referral was closed with no further action.",
        reasons="Three missed health appointments.",
        outcome_sought="A strategy discussion.",
        disagreement_date=core.service.clock.now().date(),
    )


def at_stage_2(core: Core) -> str:
    opened = core.service.open(details(core))
    assert opened.dispute is not None
    ref = opened.dispute.ref
    assert core.service.act(ref, "amara.okafor", Action.ESCALATE, reason="No reply.").ok
    return ref


@pytest.fixture
async def bot(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> Any:
    async with slack_bot(tmp_path, clock, monkeypatch, database_url=db_url) as running:
        yield running


async def test_the_same_signed_intake_replayed_logs_one_dispute(bot: SlackBot) -> None:
    body = view_submission_body(
        view_submission_payload("intake", intake_values(), user_id=AMARA, view_id="VREPLAY")
    )
    headers = signed_headers(SECRET, body)  # one signature, sent again and again as captured
    first = await bot.post(body, headers)
    assert first.status == 200
    again = [await bot.post(body, headers) for _ in range(2)]
    at_once = await asyncio.gather(*(bot.post(body, headers) for _ in range(6)))
    assert [r.status for r in [*again, *at_once]] == [200] * 8
    await bot.deliver()
    (dispute,) = bot.disputes()
    assert events(bot.core, dispute.ref).count("DisputeOpened") == 1
    assert len(bot.api.messages_in("D" + BEN)) == 1, "the other practitioner is told once"


async def test_an_action_form_submitted_again_and_again_acts_once(bot: SlackBot) -> None:
    opened = bot.core.service.open(details(bot.core))
    assert opened.dispute is not None
    ref = opened.dispute.ref
    body = view_submission_body(
        view_submission_payload(
            "action:add_note",
            {"text": text("We spoke and agreed to share the health records.")},
            user_id=BEN,
            private_metadata=json.dumps({"ref": ref}),
            view_id="VNOTE1",
        )
    )
    headers = signed_headers(SECRET, body)
    responses = await asyncio.gather(*(bot.post(body, headers) for _ in range(5)))
    assert [r.status for r in responses] == [200] * 5
    await bot.deliver()
    assert events(bot.core, ref).count("NoteAdded") == 1


async def test_two_line_managers_pressing_acknowledge_at_once_acknowledge_once_per_side(
    bot: SlackBot,
) -> None:
    ref = at_stage_2(bot.core)
    # Tom and Rosa each press twice (an impatient double click), all four at the same moment.
    presses = [(TOM, "T1"), (ROSA, "T2"), (TOM, "T3"), (ROSA, "T4")]
    responses = await asyncio.gather(
        *(bot.click("acknowledge", ref, user, trigger_id=trigger) for user, trigger in presses)
    )
    assert [r.status for r in responses] == [200] * 4
    await bot.deliver()
    with bot.core.store.unit() as session:
        stored = bot.core.store.events(session, ref)
    acks = [e for e in stored if e.type == "Acknowledged"]
    assert sorted(e.data["side"] for e in acks) == ["raising", "receiving"]
    assert sorted(e.actor or "" for e in acks) == ["rosa.delgado", "tom.hadley"]
    # The second press of each is told privately that it was already done.
    told = Counter(e.user for e in bot.api.ephemerals if "already acknowledged" in (e.text or ""))
    assert told == Counter({TOM: 1, ROSA: 1})


async def test_two_managers_escalating_at_once_escalate_one_stage(bot: SlackBot) -> None:
    ref = at_stage_2(bot.core)
    # Tom (line manager) and Grace (his service manager) both open Escalate, then both submit.
    forms = []
    for user, trigger in ((TOM, "T1"), (GRACE, "T2")):
        assert (await bot.click("escalate", ref, user, trigger_id=trigger)).status == 200
        await bot.server.settle()
        forms.append((user, bot.api.views[-1]))
    submissions = [
        bot.submit(
            "action:escalate",
            {"reason": text(f"{user} says: no agreement at stage 2.")},
            user_id=user,
            private_metadata=view.view["private_metadata"],
            view_id=view.id,
        )
        for user, view in forms
    ]
    responses = await asyncio.gather(*submissions)
    assert [r.status for r in responses] == [200, 200]
    await bot.deliver()
    escalations = [e for e in events(bot.core, ref) if e == "StageEscalated"]
    assert len(escalations) == 2, "stage 1 to 2 at the start, then 2 to 3 once"
    (dispute,) = bot.disputes()
    assert dispute.stage == 3
    # The one who came second is told it had already happened, not that it failed.
    answers = [await r.text() for r in responses]
    direct = [m.text or "" for m in bot.api.messages if m.channel in ("D" + TOM, "D" + GRACE)]
    assert any("already" in said for said in [*answers, *direct]), (answers, direct)


# --- two replicas ------------------------------------------------------------------------------


@pytest.fixture
def replicas(db_url: str, clock: FakeClock) -> Iterator[tuple[Core, Core]]:
    """Two bots on one database and one (simulated) clock: two replicas of one deployment."""
    first, second = make_core(db_url, clock), make_core(db_url, clock)
    yield first, second
    first.store.dispose()
    second.store.dispose()


def timer_events(core: Core) -> dict[str, list[tuple[str, str]]]:
    """Each dispute's timer events: what happened, and to which step."""
    out = {}
    with core.store.unit() as session:
        for dispute in core.store.open_disputes(session, core.partnership.id):
            out[dispute.ref] = [
                (
                    e.type,
                    json.dumps({k: v for k, v in e.data.items() if k != "until"}, sort_keys=True),
                )
                for e in core.store.events(session, dispute.ref)
                if e.actor is None
            ]
    return out


def outbox_size(core: Core) -> int:
    with core.store.unit() as session:
        return int(session.execute(select(func.count()).select_from(OutboxRow)).scalar_one())


HOURS, EVERY = 12 * 24, 3  # twelve days (two working weeks and more), a tick every 3 hours


def run_days(cores: list[Core], clock: FakeClock, disputes: int) -> None:
    """Open disputes, then tick through two working weeks, all replicas at the same moment."""
    for _ in range(disputes):
        assert cores[0].service.open(details(cores[0])).ok
        clock.advance(timedelta(minutes=7))
    barrier = threading.Barrier(len(cores))

    def tick(core: Core) -> int:
        barrier.wait()  # the same moment, to the thread
        return core.service.tick().fired

    with ThreadPoolExecutor(len(cores)) as pool:
        for _ in range(HOURS // EVERY):
            clock.advance(timedelta(hours=EVERY))
            list(pool.map(tick, cores))


def test_two_replicas_ticking_at_the_same_moment_fire_each_timer_once(
    replicas: tuple[Core, Core], clock: FakeClock, tmp_path: Path
) -> None:
    run_days(list(replicas), clock, disputes=6)
    both = timer_events(replicas[0])
    # The same disputes and the same hours on one replica alone: what should have happened.
    alone_clock = FakeClock(clock.now() - timedelta(hours=HOURS, minutes=7 * 6))
    alone = make_core(f"sqlite:///{tmp_path}/alone.db", alone_clock)
    try:
        run_days([alone], alone_clock, disputes=6)
        expected = timer_events(alone)
        assert both == expected
        assert outbox_size(replicas[0]) == outbox_size(alone)
    finally:
        alone.store.dispose()
    assert sum(len(v) for v in both.values()) > 6 * 3, "reminders, breaches and escalations ran"
    for ref, happened in both.items():
        assert len(happened) == len(set(happened)), f"{ref} has a timer event twice"


def test_a_replica_starting_with_overdue_work_ticks_at_once(core: Core, clock: FakeClock) -> None:
    # Work fell due while this replica was down; it starts, and its first tick does it. (It
    # used to load the directory inside its first transaction and, on SQLite, wait 30 s on its
    # own write lock, then fail: on every tick, until something else loaded the directory.)
    assert core.service.open(details(core)).ok
    clock.advance(timedelta(days=5))
    started = make_core(core.settings.database_url, clock)
    try:
        report = started.service.tick()
    finally:
        started.store.dispose()
    assert report.fired > 0


def test_someone_remembered_just_before_an_action_does_not_stall_it(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Slack user found by email is remembered by one request just as another acts: the
    # action must not wait on its own transaction to reload the directory.
    opened = core.service.open(details(core))
    assert opened.dispute is not None
    original = core.store.unit
    armed = [True]

    @contextmanager
    def unit() -> Iterator[Any]:
        if armed[0]:
            armed[0] = False
            core.service.remember_person(
                {"id": "sam.new", "name": "Sam New", "agency": "wmp", "slack_id": "U0SAMNEW"}
            )
        with original() as session:
            yield session

    monkeypatch.setattr(core.store, "unit", unit)
    done = core.service.act(
        opened.dispute.ref, "ben.carter", Action.ADD_NOTE, text="We spoke on the phone."
    )
    assert done.ok, done.text
    assert core.service.identify(slack_id="U0SAMNEW") is not None


def test_a_new_person_remembered_by_two_requests_at_once_is_remembered_once(
    pg_url: str, clock: FakeClock
) -> None:
    # Two requests from someone new at the same moment (a double click) both find them by
    # email and remember them: the second insert waits on the first, then merges into it.
    core = make_core(pg_url, clock)
    store = core.store
    first = {"id": "sam.new", "name": "Sam New", "agency": "wmp", "email": "sam@example.org"}
    second = {"id": "sam.new", "name": "Sam New", "agency": "wmp", "slack_id": "U0SAMNEW"}
    errors: list[BaseException] = []

    def remember_second() -> None:
        try:
            with store.unit() as session:
                store.remember_person(session, second, now=clock.now())
        except BaseException as exc:
            errors.append(exc)

    try:
        with store.unit() as session:
            store.remember_person(session, first, now=clock.now())
            session.flush()
            other = threading.Thread(target=remember_second)
            other.start()
            # Commit only once the other insert is waiting on this one's row.
            with store.engine.connect() as watch:
                for _ in range(2000):
                    waiting = watch.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    ).scalar_one()
                    if waiting:
                        break
                    watch.rollback()
                else:
                    raise AssertionError("the second request never reached its insert")
        other.join(timeout=30)
        assert errors == []
        with store.unit() as session:
            (seen,) = store.people_seen(session)
        assert seen["email"] == "sam@example.org" and seen["slack_id"] == "U0SAMNEW"
    finally:
        store.dispose()
