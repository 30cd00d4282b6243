"""The timekeeper on a simulated clock: reminders, due-today, breach, automatic escalation,
the overall target, check-backs and the daily digest, through the real service and store."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from conftest import EXAMPLE_CONFIG
from conftest import dispute_details as details
from sqlalchemy import select

import bot.policies
from bot.app import Core, build_core
from bot.clock import FakeClock
from bot.config import Settings
from bot.disputes import Action
from bot.flows.engine import FlowRunner
from bot.messages import ActionId, Message
from store.models import OutboxRow


def outbox(core: Core) -> list[tuple[datetime, Message]]:
    """Every message queued so far, in order, with when it was queued."""
    with core.store.unit() as session:
        rows = session.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars().all()
        return [(row.created_at, Message.from_data(row.payload)) for row in rows]


def new_since(core: Core, count: int) -> list[Message]:
    """Messages queued after the first `count`, leaving out the daily digest."""
    return [m for _, m in outbox(core)[count:] if m.kind != "digest"]


def to(messages: list[Message], person: str) -> list[str]:
    return [m.text for m in messages if m.recipient.kind == "person" and m.recipient.id == person]


def run_until(core: Core, clock: FakeClock, until: datetime, step: timedelta) -> None:
    """Tick every `step` of simulated time, as the scheduler would."""
    while clock.now() < until:
        clock.set(min(clock.now() + step, until))
        core.service.tick()


def test_reminder_due_today_breach_and_automatic_escalation(core: Core, clock: FakeClock) -> None:
    opened = core.service.open(details())
    assert opened.ok, opened.text
    ref = opened.dispute.ref  # type: ignore[union-attr]
    assert core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    before = len(outbox(core))

    # Find a way forward: 3 working days from Thu 26 Nov, so due Tue 1 Dec 17:00 London.
    run_until(core, clock, datetime(2026, 11, 30, 8, 59, tzinfo=UTC), timedelta(minutes=30))
    assert new_since(core, before) == []  # nothing over the weekend

    run_until(core, clock, datetime(2026, 11, 30, 9, 30, tzinfo=UTC), timedelta(minutes=30))
    reminders = new_since(core, before)
    assert any("Reminder" in t and "Tue 1 Dec, 17:00" in t for t in to(reminders, "ben.carter"))
    # The way forward is the receiving practitioner's step: the raiser sees it in the thread.
    assert not to(reminders, "amara.okafor")
    assert any(m.kind == "thread" and "Reminder" in m.text for m in reminders)
    before = len(outbox(core))

    run_until(core, clock, datetime(2026, 12, 1, 9, 30, tzinfo=UTC), timedelta(minutes=30))
    assert any(t.startswith("Due today") for t in to(new_since(core, before), "ben.carter"))
    before = len(outbox(core))

    # 17:00 is out of hours: the breach is told at the next opening, Wed 2 Dec 09:00.
    run_until(core, clock, datetime(2026, 12, 2, 8, 59, tzinfo=UTC), timedelta(minutes=30))
    assert new_since(core, before) == []
    run_until(core, clock, datetime(2026, 12, 2, 9, 0, tzinfo=UTC), timedelta(minutes=1))
    breach = new_since(core, before)
    assert any(t.startswith("Overdue") for t in to(breach, "ben.carter"))
    # The next stage's people hear what is coming.
    assert any("may come to you at stage 2" in t for t in to(breach, "tom.hadley"))
    assert core.service.view(ref, "amara.okafor").dispute.stage == 1  # type: ignore[union-attr]
    before = len(outbox(core))

    # Wolverhampton escalates automatically after a 2-hour grace period.
    run_until(core, clock, datetime(2026, 12, 2, 11, 0, tzinfo=UTC), timedelta(minutes=15))
    escalated = new_since(core, before)
    dispute = core.service.view(ref, "amara.okafor").dispute
    assert dispute is not None and dispute.stage == 2
    for manager in ("tom.hadley", "rosa.delgado"):
        assert any(
            "escalated to stage 2" in t and "automatically" in t for t in to(escalated, manager)
        )
        (message,) = [m for m in escalated if m.recipient.id == manager]
        assert "acknowledge" in [b.action.value for b in message.buttons]


def test_each_nudge_goes_out_once_however_often_the_tick_runs(core: Core, clock: FakeClock) -> None:
    ref = core.service.open(details()).dispute.ref  # type: ignore[union-attr]
    clock.set(datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    first = core.service.tick()
    count = len(outbox(core))
    for _ in range(5):
        assert core.service.tick().fired == 0
    assert len(outbox(core)) == count
    assert first.fired == 1
    assert ref


def test_immediate_risk_dispute_is_nudged_out_of_hours_and_goes_to_on_call(
    core: Core, clock: FakeClock
) -> None:
    core.service.open(details(immediate_risk=True))
    before = len(outbox(core))
    # Tue 1 Dec 17:00 is past closing: an urgent dispute's breach is told at once, at any hour.
    clock.set(datetime(2026, 12, 1, 17, 30, tzinfo=UTC))
    core.service.tick()
    messages = new_since(core, before)
    assert any(t.startswith("Overdue") for t in to(messages, "ben.carter"))
    on_call = core.service.directory.role_holders("rwt", "on_call")
    assert on_call, "the example directory has an on-call person at the trust"
    assert any(t.startswith("Overdue") for t in to(messages, on_call[0].id))


def test_no_nudges_on_bank_holidays_or_weekends(core: Core, clock: FakeClock) -> None:
    # Opened Mon 21 Dec: 3 working days for the way forward make it due Thu 24 Dec 17:00.
    # The breach falls after closing, and 25 Dec, the weekend and the substitute Boxing Day
    # (Mon 28 Dec) are not working days: it is told on Tue 29 Dec at 09:00.
    clock.set(datetime(2026, 12, 21, 10, 0, tzinfo=UTC))
    ref = core.service.open(details(disagreement_date=date(2026, 12, 21))).dispute.ref  # type: ignore[union-attr]
    dispute = core.service.view(ref, "amara.okafor").dispute
    assert dispute is not None and dispute.next_due is not None
    assert dispute.next_due.due_at == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    sent_at: list[datetime] = []
    while clock.now() < datetime(2026, 12, 29, 12, 0, tzinfo=UTC):
        clock.advance(timedelta(minutes=30))
        count = len(new_since(core, 0))
        core.service.tick()
        if len(new_since(core, 0)) > count:
            sent_at.append(clock.now())
    days = {at.date() for at in sent_at}
    assert days == {date(2026, 12, 23), date(2026, 12, 24), date(2026, 12, 29)}
    assert datetime(2026, 12, 29, 9, 0, tzinfo=UTC) in sent_at  # the breach, at opening
    dispute = core.service.view(ref, "amara.okafor").dispute
    assert dispute is not None and dispute.stage == 2  # escalated at 11:00 after the grace


def test_across_the_clock_change_nudges_keep_london_hours(core: Core, clock: FakeClock) -> None:
    # British Summer Time ends Sun 25 Oct 2026. Opened Thu 22 Oct (BST): the way forward is
    # due Tue 27 Oct 17:00 GMT; the reminder is Mon 26 Oct at 09:00 GMT (09:00 UTC), not 08:00.
    clock.set(datetime(2026, 10, 22, 9, 0, tzinfo=UTC))  # 10:00 BST
    core.service.open(details(disagreement_date=date(2026, 10, 22)))
    before = len(new_since(core, 0))
    run_until(core, clock, datetime(2026, 10, 26, 8, 59, tzinfo=UTC), timedelta(minutes=30))
    assert len(new_since(core, 0)) == before
    run_until(core, clock, datetime(2026, 10, 26, 9, 0, tzinfo=UTC), timedelta(minutes=1))
    assert any("Reminder" in t for t in to(new_since(core, before), "ben.carter"))


def test_check_back_on_the_review_date_then_reopen(core: Core, clock: FakeClock) -> None:
    ref = core.service.open(details()).dispute.ref  # type: ignore[union-attr]
    assert core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE).ok
    proposed = core.service.act(
        ref,
        "ben.carter",
        Action.PROPOSE_RESOLUTION,
        outcome="A strategy discussion will be held.",
        actions=[("Hold the strategy discussion", "ben.carter", date(2026, 12, 4))],
    )
    assert proposed.ok, proposed.text
    confirmed = core.service.act(ref, "amara.okafor", Action.RESPOND_TO_RESOLUTION, confirm=True)
    assert confirmed.ok, confirmed.text
    before = len(outbox(core))
    run_until(core, clock, datetime(2026, 12, 4, 8, 30, tzinfo=UTC), timedelta(hours=1))
    assert not any("Check-back" in m.text for m in new_since(core, before))
    run_until(core, clock, datetime(2026, 12, 4, 9, 30, tzinfo=UTC), timedelta(minutes=30))
    checks = new_since(core, before)
    assert any("Check-back" in t for t in to(checks, "ben.carter"))
    assert any("Check-back" in t for t in to(checks, "amara.okafor"))

    outsider = core.service.act(ref, "irene.falk", Action.REVIEW_ACTIONS, implemented=True)
    assert not outsider.ok
    reopened = core.service.act(
        ref, "amara.okafor", Action.REVIEW_ACTIONS, implemented=False, reason="No meeting was held."
    )
    assert reopened.ok, reopened.text
    dispute = core.service.view(ref, "amara.okafor").dispute
    assert dispute is not None and dispute.is_open and dispute.next_due is not None


def test_digest_once_on_working_days_at_the_configured_time(core: Core, clock: FakeClock) -> None:
    core.service.open(details())
    core.service.open(details(case_ref="CS-300001", receiving_agency="wmp", receiving_person=None))
    # Sat 28 Nov: no digest at all.
    clock.set(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert core.service.tick().digest is False
    # Tue 1 Dec 09:00 is before 09:30; at 09:30 it goes, once.
    clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert core.service.tick().digest is False
    clock.set(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    assert core.service.tick().digest is True
    clock.advance(timedelta(hours=2))
    assert core.service.tick().digest is False
    digests = [m for _, m in outbox(core) if m.kind == "digest"]
    assert len(digests) == 1
    digest = digests[0]
    assert digest.recipient.id == "oversight"
    assert "2 due within one working day" in digest.text
    # Only references, agencies, stage and deadline: never the case's details.
    rendered = digest.text + " ".join(f"{k} {v}" for k, v in digest.facts)
    assert "CS-204611" not in rendered and "injury" not in rendered
    assert "Stage 1 - WST-2026-0001" in [k for k, _ in digest.facts]


def test_past_the_overall_target_the_escalating_agency_gives_a_reason(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Barnet's rule ("if it takes longer, record the reason for delay") on the example
    # partnership: its own policy file, Wolverhampton's stages with a 5-day reason-for-delay target.
    shutil.copytree(EXAMPLE_CONFIG.parent, tmp_path / "cfg")
    preset = Path(bot.policies.__file__).parent / "wolverhampton.yaml"
    text = preset.read_text().replace(
        "deadline: 10 working days\n  on_breach: notify",
        "deadline: 5 working days\n  on_breach: reason_for_delay",
    )
    assert "reason_for_delay" in text
    (tmp_path / "cfg" / "own-policy.yaml").write_text(text)
    config = tmp_path / "cfg" / "partnership.yaml"
    config.write_text(
        config.read_text().replace("policy: wolverhampton", "policy: own-policy.yaml")
    )
    core = build_core(
        Settings(database_url=f"sqlite:///{tmp_path}/b.db", escalation_config=str(config)),
        clock=clock,
    )
    try:
        ref = core.service.open(details()).dispute.ref  # type: ignore[union-attr]
        # Five working days from Thu 26 Nov: Thu 3 Dec 17:00, told Fri 4 Dec 09:00.
        run_until(core, clock, datetime(2026, 12, 4, 8, 59, tzinfo=UTC), timedelta(hours=1))
        assert not any("overall target" in t for t in to(new_since(core, 0), "amara.okafor"))
        run_until(core, clock, datetime(2026, 12, 4, 9, 0, tzinfo=UTC), timedelta(minutes=1))
        asked = [m for m in new_since(core, 0) if "overall target" in m.text]
        assert asked and all(m.recipient.id != "ben.carter" for m in asked)
        assert any("reason for the delay" in m.text for m in asked)
        dispute = core.service.view(ref, "amara.okafor").dispute
        assert dispute is not None and dispute.delay_reason_required
        # Only the escalating agency records it; then the requirement is met.
        assert not core.service.act(
            ref, "ben.carter", Action.RECORD_DELAY_REASON, reason="x", safety_confirmed=True
        ).ok
        done = core.service.act(
            ref,
            "amara.okafor",
            Action.RECORD_DELAY_REASON,
            reason="Waiting for the health records.",
            safety_confirmed=True,
        )
        assert done.ok, done.text
        dispute = core.service.view(ref, "amara.okafor").dispute
        assert dispute is not None and not dispute.delay_reason_required
    finally:
        core.store.dispose()


def test_a_reminder_snoozed_comes_back_next_morning_to_that_person_only(
    core: Core, clock: FakeClock
) -> None:
    ref = core.service.open(details()).dispute.ref  # type: ignore[union-attr]
    assert not core.service.act(ref, "ben.carter", Action.SNOOZE).ok  # nothing to snooze yet
    run_until(core, clock, datetime(2026, 11, 30, 9, 30, tzinfo=UTC), timedelta(minutes=30))
    outsider = core.service.act(ref, "dan.fielding", Action.SNOOZE)
    assert not outsider.ok
    snoozed = core.service.act(ref, "ben.carter", Action.SNOOZE)
    assert snoozed.ok, snoozed.text
    assert "Tue 1 Dec, 09:00" in snoozed.text
    before = len(new_since(core, 0))
    run_until(core, clock, datetime(2026, 12, 1, 8, 59, tzinfo=UTC), timedelta(minutes=30))
    assert len(new_since(core, 0)) == before
    run_until(core, clock, datetime(2026, 12, 1, 9, 0, tzinfo=UTC), timedelta(minutes=1))
    again = new_since(core, before)
    reminders = [m for m in again if m.text.startswith("Reminder")]
    assert [m.recipient.id for m in reminders] == ["ben.carter"]
    # The "due today" nudge that morning cannot be put off past the deadline.
    assert any(m.text.startswith("Due today") for m in again)
    refused = core.service.act(ref, "ben.carter", Action.SNOOZE)
    assert not refused.ok and "due before the next working morning" in refused.text


def test_the_check_back_button_flow_records_implemented(core: Core, clock: FakeClock) -> None:
    ref = core.service.open(details()).dispute.ref  # type: ignore[union-attr]
    core.service.act(ref, "ben.carter", Action.ACKNOWLEDGE)
    core.service.act(
        ref,
        "ben.carter",
        Action.PROPOSE_RESOLUTION,
        outcome="A joint visit.",
        actions=[("Joint visit", "ben.carter", date(2026, 12, 2))],
    )
    core.service.act(ref, "amara.okafor", Action.RESPOND_TO_RESOLUTION, confirm=True)
    run_until(core, clock, datetime(2026, 12, 2, 9, 30, tzinfo=UTC), timedelta(hours=1))
    conv = core.conversations
    flow = conv.action_flow(ActionId.REVIEW_ACTIONS)
    runner = FlowRunner(flow.flow, conv.context(core.service.person("ben.carter")))
    assert runner.answer("implemented", "no").accepted
    assert runner.pending() is not None and runner.pending().id == "reason"  # type: ignore[union-attr]
    assert runner.answer("implemented", "yes").accepted
    assert runner.pending() is None
    person = core.service.person("ben.carter")
    assert person is not None
    outcome = conv.run_action(ref, person, ActionId.REVIEW_ACTIONS, runner.state.answers)
    assert outcome.ok, outcome.text
    dispute = core.service.view(ref, "ben.carter").dispute
    assert dispute is not None
    assert dispute.resolution is not None
    assert [a.status for a in dispute.resolution.actions] == ["implemented"]
