"""The Dispute aggregate: opening, deadlines, who may do what, and every command, on a simulated clock.

The example partnership (examples/directory.yaml) under the policy presets; time only moves by
passing `now`. Dates in comments are local (Europe/London); in winter that is UTC.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import timers
from bot.directory import Directory, Person, load_directory
from bot.disputes import (
    SUMMARY_LIMIT,
    Action,
    Dispute,
    DisputeDetails,
    DisputeError,
    NotAllowed,
    Status,
    StepState,
    from_data,
    open_dispute,
    to_data,
)
from bot.policy import Policy, load_preset, policy_from_snapshot
from bot.workdays import WorkingCalendar

REPO = Path(__file__).resolve().parents[2]
LONDON = ZoneInfo("Europe/London")
# Thursday 26 November 2026, 10:00 in London (GMT).
START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(REPO / "examples" / "directory.yaml")


@pytest.fixture(scope="module")
def wolverhampton() -> Policy:
    return load_preset("wolverhampton")


@pytest.fixture(scope="module")
def calendar(wolverhampton: Policy) -> WorkingCalendar:
    return wolverhampton.calendar()


def details(**changes: Any) -> DisputeDetails:
    """Amara Okafor (council children's services) disagrees with Ben Carter (the Trust)."""
    base = DisputeDetails(
        raised_by="amara.okafor",
        raising_agency="cwc-childrens",
        receiving_agency="rwt",
        receiving_person="ben.carter",
        category="threshold",
        case_ref="CS-40112",
        decision="Health visiting closed the case after one missed appointment.",
        reasons="Two further missed appointments and a new partner in the home.",
        outcome_sought="Keep the case open and visit jointly this week.",
        disagreement_date=date(2026, 11, 26),
    )
    return replace(base, **changes)


def open_(
    directory: Directory,
    policy: Policy,
    now: datetime = START,
    ref: str = "WST-2026-0001",
    **changes: Any,
) -> Dispute:
    return open_dispute(
        ref=ref,
        partnership_id="wst-example",
        policy=policy,
        details=details(**changes),
        directory=directory,
        calendar=policy.calendar(),
        now=now,
    )


def step(dispute: Dispute, step_id: str, stage: int | None = None) -> StepState:
    """The latest running of a step (at the dispute's current stage by default)."""
    number = stage or dispute.stage
    found = [s for s in dispute.steps if s.stage == number and s.step_id == step_id]
    assert found, f"no step {step_id} at stage {number}: {[s.step_id for s in dispute.steps]}"
    return found[-1]


def types(dispute: Dispute) -> list[str]:
    return [e.type for e in dispute.new_events]


def ids(people: list[Person]) -> list[str]:
    return [p.id for p in people]


# --- opening: validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"receiving_agency": "cwc-childrens", "receiving_person": None},
            "both sides are in the same agency",
        ),
        ({"receiving_agency": "lake-police", "receiving_person": None}, "the other agency"),
        ({"raising_agency": "lake-police"}, "your agency ('lake-police')"),
        ({"raised_by": "nobody.here"}, "you are not in the partnership directory"),
        ({"raising_agency": "wmp"}, "Amara Okafor is not in West Midlands Police"),
        ({"receiving_person": "ghost.person"}, "nobody in the directory has the id 'ghost.person'"),
        ({"receiving_person": "dan.fielding"}, "Dan Fielding is not in Royal Wolverhampton"),
        ({"category": "parking"}, "'parking' is not a category of this policy"),
        ({"case_ref": "   "}, "the case reference is empty"),
        ({"case_ref": "C" * 41}, "the case reference is 41 characters"),
        ({"decision": ""}, "the decision you disagree with is empty"),
        ({"reasons": "x" * (SUMMARY_LIMIT + 1)}, "the reasons is 3,001 characters"),
        ({"outcome_sought": "\n\t"}, "the outcome sought is empty"),
        ({"disagreement_date": date(2026, 11, 27)}, "cannot be in the future"),
    ],
)
def test_open_dispute_refuses_what_it_cannot_log(
    directory: Directory, wolverhampton: Policy, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DisputeError) as caught:
        open_(directory, wolverhampton, **changes)
    assert message in str(caught.value)


def test_open_dispute_trims_what_was_typed(directory: Directory, wolverhampton: Policy) -> None:
    dispute = open_(directory, wolverhampton, case_ref="  CS-40112 \n", reasons=" why ")
    assert dispute.details.case_ref == "CS-40112"
    assert dispute.details.reasons == "why"


def test_the_disagreement_date_is_judged_in_london_not_utc(
    directory: Directory, wolverhampton: Policy
) -> None:
    # 23:30 UTC on 30 June is already 1 July in London (BST).
    late_evening = utc(2026, 6, 30, 23, 30)
    dispute = open_(directory, wolverhampton, now=late_evening, disagreement_date=date(2026, 7, 1))
    assert dispute.details.disagreement_date == date(2026, 7, 1)
    with pytest.raises(DisputeError, match="future"):
        open_(directory, wolverhampton, now=late_evening, disagreement_date=date(2026, 7, 2))


def test_an_unknown_receiving_practitioner_goes_to_their_agencys_lead(
    directory: Directory, wolverhampton: Policy
) -> None:
    dispute = open_(directory, wolverhampton, receiving_person=None)
    assert ids(dispute.actors(directory, "receiving")) == ["imran.shah"]
    assert ids(dispute.actors(directory, "raising")) == ["amara.okafor"]


def test_opening_records_the_details_and_the_policy_version(
    directory: Directory, wolverhampton: Policy
) -> None:
    dispute = open_(directory, wolverhampton)
    opened = dispute.new_events[0]
    assert (opened.type, opened.at, opened.actor) == ("DisputeOpened", START, "amara.okafor")
    assert opened.data["policy"] == "wolverhampton"
    assert opened.data["policy_version"] == wolverhampton.version
    assert opened.data["policy_fingerprint"] == wolverhampton.fingerprint
    assert opened.data["receiving_person"] == "ben.carter"
    assert opened.data["disagreement_date"] == "2026-11-26"
    assert dispute.status == Status.OPEN and dispute.stage == 1 and dispute.is_open
    assert dispute.flags == set()


def test_an_immediate_risk_flags_the_dispute_urgent(
    directory: Directory, wolverhampton: Policy
) -> None:
    dispute = open_(directory, wolverhampton, immediate_risk=True)
    assert "urgent" in dispute.flags
    assert types(dispute)[:2] == ["DisputeOpened", "ImmediateRiskFlagged"]


# --- Wolverhampton stage 1 deadlines -----------------------------------------------------------


def test_wolverhampton_stage_one_raise_then_find_a_way_forward(
    directory: Directory, wolverhampton: Policy
) -> None:
    dispute = open_(directory, wolverhampton)
    raise_, forward = dispute.steps
    # Raising is done by logging it: 2 working days from Thu 26 Nov is Mon 30 Nov.
    assert (raise_.step_id, raise_.status, raise_.completed_by) == ("raise", "done", "amara.okafor")
    assert raise_.due_at == utc(2026, 11, 30, 17)
    assert raise_.met is True
    # Three working days counted from the raise (Thu 26 Nov): Fri 27, Mon 30, Tue 1 Dec.
    assert (forward.step_id, forward.status) == ("find-way-forward", "active")
    assert forward.due_at == utc(2026, 12, 1, 17)
    assert dispute.next_due is forward
    # The overall target: 10 working days from the disagreement.
    assert dispute.overall_due == utc(2026, 12, 10, 17)
    completed = dispute.new_events[-1]
    assert completed.type == "StepCompleted"
    assert completed.data == {
        "stage": 1,
        "step": "raise",
        "due": "2026-11-30T17:00:00+00:00",
        "on_time": True,
    }


def test_finding_a_way_forward_counts_from_a_late_raise_not_from_its_due_date(
    directory: Directory, wolverhampton: Policy
) -> None:
    # Disagreement on Mon 23 Nov, logged on Thu 26 Nov: the raise was due Wed 25 Nov.
    dispute = open_(directory, wolverhampton, disagreement_date=date(2026, 11, 23))
    raise_ = step(dispute, "raise")
    assert raise_.due_at == utc(2026, 11, 25, 17)
    assert raise_.met is False
    assert dispute.new_events[-1].data["on_time"] is False
    # Three working days from the 26th, when it was actually raised (from the 25th: Mon 30th).
    assert step(dispute, "find-way-forward").due_at == utc(2026, 12, 1, 17)


@pytest.mark.parametrize(
    ("disagreement", "opened", "raise_due", "forward_due", "overall_due"),
    [
        # Wed 23 Dec: Thu 24, (Fri 25 Christmas, Mon 28 substitute Boxing Day), Tue 29, Wed 30;
        # the tenth working day is Mon 11 Jan (Thu 31 Dec, then Mon 4 Jan after New Year's Day).
        (
            date(2026, 12, 23),
            utc(2026, 12, 23, 10),
            utc(2026, 12, 29, 17),
            utc(2026, 12, 30, 17),
            utc(2027, 1, 11, 17),
        ),
        # Thu 24 Dec, logged Wed 30 Dec: Thu 31, (Fri 1 Jan New Year's Day), Mon 4, Tue 5 Jan.
        (
            date(2026, 12, 24),
            utc(2026, 12, 30, 10),
            utc(2026, 12, 30, 17),
            utc(2027, 1, 5, 17),
            utc(2027, 1, 12, 17),
        ),
    ],
)
def test_wolverhampton_deadlines_over_christmas_2026_skip_the_bank_holidays(
    directory: Directory,
    wolverhampton: Policy,
    calendar: WorkingCalendar,
    disagreement: date,
    opened: datetime,
    raise_due: datetime,
    forward_due: datetime,
    overall_due: datetime,
) -> None:
    for holiday in (date(2026, 12, 25), date(2026, 12, 28), date(2027, 1, 1)):
        assert not calendar.is_working_day(holiday)
    dispute = open_(directory, wolverhampton, now=opened, disagreement_date=disagreement)
    assert step(dispute, "raise").due_at == raise_due
    assert step(dispute, "raise").met is True
    assert step(dispute, "find-way-forward").due_at == forward_due
    assert dispute.overall_due == overall_due


def test_summer_deadlines_fall_at_five_pm_british_summer_time(
    directory: Directory, wolverhampton: Policy
) -> None:
    opened = datetime(2026, 6, 1, 10, 0, tzinfo=LONDON)  # Mon 1 June
    dispute = open_(directory, wolverhampton, now=opened, disagreement_date=date(2026, 6, 1))
    assert step(dispute, "raise").due_at == datetime(2026, 6, 3, 17, 0, tzinfo=LONDON)
    assert step(dispute, "find-way-forward").due_at == utc(2026, 6, 4, 16)


# --- acknowledging ----------------------------------------------------------------------------


def test_acknowledging_twice_is_a_harmless_double_click(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    ben = directory.person("ben.carter")
    at = START + timedelta(minutes=20)
    assert dispute.acknowledge(ben, directory, calendar, at) is True
    event = dispute.new_events[-1]
    assert (event.type, event.actor, event.data) == (
        "Acknowledged",
        "ben.carter",
        {"stage": 1, "side": "receiving"},
    )
    assert dispute.acknowledged_by("receiving") == ("ben.carter", at)
    before = deepcopy(dispute.new_events)
    assert dispute.acknowledge(ben, directory, calendar, at + timedelta(seconds=2)) is False
    assert dispute.new_events == before
    assert dispute.acknowledged_by("receiving") == ("ben.carter", at)
    assert dispute.acknowledged_by("raising") is None


def test_the_raiser_has_nothing_to_acknowledge(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    with pytest.raises(NotAllowed, match="you raised this dispute"):
        dispute.acknowledge(directory.person("amara.okafor"), directory, calendar, START)
    assert dispute.acknowledged_by("raising") is None
    assert dispute.new_events[-1].type == "ActionRefused"


def test_acknowledgements_start_afresh_at_each_stage(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    dispute.acknowledge(directory.person("ben.carter"), directory, calendar, START)
    dispute.escalate(
        directory.person("amara.okafor"), directory, calendar, START, reason="No reply."
    )
    assert dispute.acknowledged_by("receiving") is None
    rosa = directory.person("rosa.delgado")
    assert dispute.acknowledge(rosa, directory, calendar, START) is True
    assert dispute.acknowledged_by("receiving") == ("rosa.delgado", START)
    assert dispute.acknowledgements["1"]["receiving"][0] == "ben.carter"


# --- who may do what ----------------------------------------------------------------------


# Stage 1 of Amara Okafor's dispute with Ben Carter.
PARTIES = ["amara.okafor", "ben.carter"]
CHAINS = [
    "tom.hadley",
    "grace.mensah",
    "olivia.brandt",
    "rosa.delgado",
    "imran.shah",
    "judith.moore",
]
ADMINS = ["helen.marsh", "george.ellis"]
STRANGERS = {
    # A practitioner of a third agency.
    "dan.fielding": "you are not in either agency of this dispute",
    # The partnership's SACG chair is not an admin and not yet involved.
    "irene.falk": "you are not in either agency of this dispute",
    # Colleagues of the parties who are neither acting nor managing them.
    "chloe.evans": "at stage 1 (Practitioners) this is for the receiving agency's practitioner",
    "priya.nair": "at stage 1 (Practitioners) this is for the raising agency's practitioner",
}


@pytest.mark.parametrize("person_id", PARTIES + CHAINS + ADMINS)
def test_parties_their_managers_leads_and_admins_may_escalate_and_view(
    directory: Directory, wolverhampton: Policy, person_id: str
) -> None:
    dispute = open_(directory, wolverhampton)
    person = directory.person(person_id)
    assert dispute.allowed(person, Action.ESCALATE, directory) is None
    assert dispute.allowed(person, Action.VIEW, directory) is None
    assert dispute.allowed(person, Action.ADD_NOTE, directory) is None


@pytest.mark.parametrize(("person_id", "reason"), sorted(STRANGERS.items()))
def test_people_outside_the_dispute_are_refused_with_a_reason(
    directory: Directory, wolverhampton: Policy, person_id: str, reason: str
) -> None:
    dispute = open_(directory, wolverhampton)
    person = directory.person(person_id)
    assert dispute.allowed(person, Action.ESCALATE, directory) == reason
    assert dispute.allowed(person, Action.VIEW, directory) == (
        "only the people involved in this dispute can see or add to it"
    )


def test_a_refusal_is_recorded_as_an_event_and_changes_nothing_else(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    state = to_data(dispute)
    dan = directory.person("dan.fielding")
    later = START + timedelta(hours=1)
    with pytest.raises(NotAllowed) as caught:
        dispute.escalate(dan, directory, calendar, later, reason="I think it should go up.")
    refused = dispute.new_events[-1]
    assert (refused.type, refused.at, refused.actor) == ("ActionRefused", later, "dan.fielding")
    assert refused.data == {"action": "escalate", "reason": str(caught.value)}
    assert str(caught.value) == "you are not in either agency of this dispute"
    assert to_data(dispute) == state
    with pytest.raises(NotAllowed):
        dispute.add_note(dan, directory, calendar, later, text="Spoke to mum.")
    assert dispute.new_events[-1].data["action"] == "add_note"
    assert dispute.notes == 0


def test_involved_is_parties_their_chains_leads_and_admins(
    directory: Directory, wolverhampton: Policy
) -> None:
    dispute = open_(directory, wolverhampton)
    assert ids(dispute.parties(directory)) == PARTIES
    assert set(ids(dispute.involved(directory))) == set(PARTIES + CHAINS + ADMINS)


# --- notes --------------------------------------------------------------------------------


def test_a_note_records_who_with_whom_when_and_what(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    now = START + timedelta(hours=3)
    held = START + timedelta(hours=1)
    dispute.add_note(
        directory.person("amara.okafor"),
        directory,
        calendar,
        now,
        text="  Phoned Ben; he will read the file today.  ",
        with_whom="ben.carter",
        held_at=held,
    )
    note = dispute.new_events[-1]
    assert (note.type, note.at, note.actor) == ("NoteAdded", now, "amara.okafor")
    assert note.data == {
        "text": "Phoned Ben; he will read the file today.",
        "with_whom": "ben.carter",
        "held_at": held.isoformat(),
        "stage": 1,
    }
    assert dispute.notes == 1


@pytest.mark.parametrize(
    ("text", "held_later_by", "message"),
    [
        ("   ", None, "the note is empty"),
        ("x" * (SUMMARY_LIMIT + 1), None, "please keep it under 3,000"),
        ("Met at the school.", timedelta(minutes=5), "cannot be recorded as held in the future"),
    ],
)
def test_a_note_must_say_something_about_the_past(
    directory: Directory,
    wolverhampton: Policy,
    calendar: WorkingCalendar,
    text: str,
    held_later_by: timedelta | None,
    message: str,
) -> None:
    dispute = open_(directory, wolverhampton)
    held = START + held_later_by if held_later_by else None
    with pytest.raises(DisputeError, match=message):
        dispute.add_note(
            directory.person("tom.hadley"), directory, calendar, START, text=text, held_at=held
        )
    assert dispute.notes == 0
    assert "NoteAdded" not in types(dispute)


# --- escalation -------------------------------------------------------------------------------


def test_escalating_by_hand_moves_to_the_line_managers(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    now = utc(2026, 11, 27, 11)  # Fri 27 Nov
    dispute.escalate(
        directory.person("amara.okafor"), directory, calendar, now, reason="  No reply from Ben. "
    )
    assert dispute.stage == 2
    assert dispute.stage_started_at == now
    escalated = dispute.new_events[-1]
    assert (escalated.type, escalated.actor) == ("StageEscalated", "amara.okafor")
    assert escalated.data == {
        "from_stage": 1,
        "to_stage": 2,
        "reason": "No reply from Ben.",
        "automatic": False,
    }
    assert step(dispute, "find-way-forward", stage=1).status == "cancelled"
    managers = step(dispute, "managers-resolve")
    # 2 working days from the start of stage 2 (Fri 27 Nov): Mon 30 Nov, Tue 1 Dec.
    assert (managers.status, managers.due_at) == ("active", utc(2026, 12, 1, 17))
    assert ids(dispute.actors(directory, "raising")) == ["tom.hadley"]
    assert ids(dispute.actors(directory, "receiving")) == ["rosa.delgado"]
    assert ids(dispute.parties(directory)) == ["tom.hadley", "rosa.delgado"]


def test_a_line_manager_who_is_away_is_replaced_by_their_deputy_at_stage_two(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    tom_away = directory.with_people(
        [directory.person("tom.hadley").model_copy(update={"away": True})]
    )
    dispute = open_(tom_away, wolverhampton)
    dispute.escalate(tom_away.person("ben.carter"), tom_away, calendar, START, reason="Stuck.")
    assert ids(dispute.parties(tom_away)) == ["hannah.price", "rosa.delgado"]


def test_an_escalation_needs_a_reason(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    with pytest.raises(DisputeError, match="the reason is empty"):
        dispute.escalate(directory.person("amara.okafor"), directory, calendar, START, reason=" ")
    assert dispute.stage == 1


def test_the_bot_escalates_without_a_person(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    dispute.escalate(None, directory, calendar, START, reason="The deadline passed.")
    escalated = dispute.new_events[-1]
    assert (escalated.type, escalated.actor, escalated.data["automatic"]) == (
        "StageEscalated",
        None,
        True,
    )
    assert dispute.stage == 2


def test_an_admin_outside_both_agencies_may_escalate(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    dispute.escalate(directory.person("helen.marsh"), directory, calendar, START, reason="Board.")
    assert dispute.stage == 2
    assert dispute.new_events[-1].actor == "helen.marsh"


def to_stage_four(directory: Directory, dispute: Dispute, calendar: WorkingCalendar) -> None:
    for person_id in ("amara.okafor", "tom.hadley", "grace.mensah"):
        dispute.escalate(
            directory.person(person_id), directory, calendar, START, reason="Still stuck."
        )


def test_a_raised_step_of_a_new_stage_is_done_by_whoever_escalated(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    to_stage_four(directory, dispute, calendar)
    # Stage 3 began with Tom Hadley's referral in writing, stage 4 with Grace Mensah's.
    assert step(dispute, "refer-in-writing", stage=3).completed_by == "tom.hadley"
    assert step(dispute, "raise-with-representative", stage=4).completed_by == "grace.mensah"
    assert ids(dispute.parties(directory)) == ["olivia.brandt", "judith.moore"]


def test_the_record_shows_an_escalation_before_the_new_stages_steps(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    dispute.escalate(directory.person("amara.okafor"), directory, calendar, START, reason="r")
    mark = len(dispute.new_events)
    dispute.escalate(directory.person("tom.hadley"), directory, calendar, START, reason="r")
    assert [
        (e.type, e.data.get("to_stage", e.data.get("stage"))) for e in dispute.new_events[mark:]
    ] == [
        ("StageEscalated", 3),
        ("StepCompleted", 3),
    ]


def test_escalating_past_wolverhamptons_last_stage_takes_the_exceptional_route(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    to_stage_four(directory, dispute, calendar)
    now = utc(2026, 11, 27, 10)  # Fri 27 Nov
    judith = directory.person("judith.moore")
    dispute.escalate(judith, directory, calendar, now, reason="Representatives cannot agree.")
    assert dispute.stage == 4 == wolverhampton.last_stage
    assert "exceptional" in dispute.flags
    taken = next(e for e in dispute.new_events if e.type == "ExceptionalRouteTaken")
    assert (taken.type, taken.actor, taken.data) == (
        "ExceptionalRouteTaken",
        "judith.moore",
        {"reason": "Representatives cannot agree.", "stage": 4},
    )
    # The representatives' meeting failed; it is not left to breach.
    assert step(dispute, "representatives-meet").status == "cancelled"
    # The Director's letter is the escalation itself, due 2 working days from when the route
    # was taken (Fri 27 Nov), not from the start of stage 4; the Chair then has 5 working days.
    director = step(dispute, "director-writes-to-chair")
    assert (director.completed_by, director.due_at) == ("judith.moore", utc(2026, 12, 1, 17))
    chair = step(dispute, "chair-decides")
    assert (chair.status, chair.due_at) == ("active", utc(2026, 12, 4, 17))
    assert [s.step_id for s in dispute.open_steps()] == ["chair-decides"]
    assert ids(dispute.parties(directory)) == ["irene.falk"]


def test_the_exceptional_route_is_taken_only_once_and_a_refusal_changes_nothing(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    to_stage_four(directory, dispute, calendar)
    judith = directory.person("judith.moore")
    dispute.escalate(judith, directory, calendar, START, reason="No agreement.")
    state = to_data(dispute)
    with pytest.raises(DisputeError, match="already on the exceptional route"):
        dispute.escalate(judith, directory, calendar, START, reason="Again.", urgent=True)
    assert to_data(dispute) == state
    assert "urgent" not in dispute.flags


@pytest.mark.parametrize("preset", ["barnet", "lincolnshire", "harrow"])
def test_a_policy_without_an_exceptional_route_stops_at_its_last_stage(
    directory: Directory, preset: str
) -> None:
    policy = load_preset(preset)
    calendar = policy.calendar()
    dispute = open_(directory, policy, category="other")
    for _ in range(policy.last_stage - 1):
        dispute.escalate(None, directory, calendar, START, reason="Unresolved.")
    assert dispute.stage == policy.last_stage
    state = to_data(dispute)
    with pytest.raises(DisputeError, match="already at the final stage"):
        dispute.escalate(None, directory, calendar, START, reason="Further.", urgent=True)
    assert to_data(dispute) == state


def test_worcestershire_goes_beyond_its_last_stage_to_the_case_review_group(
    directory: Directory,
) -> None:
    worcestershire = load_preset("worcestershire")
    calendar = worcestershire.calendar()
    dispute = open_(directory, worcestershire, category="other")
    for _ in range(worcestershire.last_stage - 1):
        dispute.escalate(None, directory, calendar, START, reason="Unresolved.")
    friday = utc(2026, 11, 27, 10)
    dispute.escalate(None, directory, calendar, friday, reason="Directors cannot agree.")
    assert dispute.stage == worcestershire.last_stage and "exceptional" in dispute.flags
    referral = step(dispute, "case-review-group")
    # No fixed timescale: the step's own local target, 5 working days from Fri 27 Nov.
    assert (referral.local_target, referral.due_at) == (True, utc(2026, 12, 4, 17))
    assert [s.step_id for s in dispute.open_steps()] == ["case-review-group"]


# --- resolution ---------------------------------------------------------------------------


def propose(
    directory: Directory, dispute: Dispute, calendar: WorkingCalendar, now: datetime = START
) -> None:
    dispute.propose_resolution(
        directory.person("ben.carter"),
        directory,
        calendar,
        now,
        outcome="Case stays open; joint visit on Tuesday.",
        actions=[
            ("Joint home visit", "ben.carter", date(2026, 12, 1)),
            ("Update the child's plan", "amara.okafor", date(2026, 12, 8)),
        ],
    )


def test_proposing_a_resolution_sets_agreed_actions_and_a_deadline_to_confirm(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    now = utc(2026, 11, 26, 15)
    propose(directory, dispute, calendar, now)
    assert dispute.status == Status.RESOLUTION_PROPOSED and dispute.is_open
    resolution = dispute.resolution
    assert resolution is not None
    assert (resolution.proposed_by, resolution.side, resolution.status) == (
        "ben.carter",
        "receiving",
        "proposed",
    )
    assert [(a.id, a.owner, a.review_date, a.status) for a in resolution.actions] == [
        (1, "ben.carter", date(2026, 12, 1), "open"),
        (2, "amara.okafor", date(2026, 12, 8), "open"),
    ]
    proposed = next(e for e in dispute.new_events if e.type == "ResolutionProposed")
    assert proposed.data["actions"][1]["review_date"] == "2026-12-08"
    assert (proposed.data["side"], proposed.data["stage"]) == ("receiving", 1)
    assert step(dispute, "find-way-forward").status == "done"
    assert step(dispute, "find-way-forward").completed_by == "ben.carter"
    # The outcome in writing: 2 working days from the proposal (Thu 26 Nov): Mon 30 Nov.
    writing = step(dispute, "outcome-in-writing")
    assert (writing.status, writing.due_at) == ("active", utc(2026, 11, 30, 17))


@pytest.mark.parametrize(
    ("outcome", "actions", "message"),
    [
        ("", [], "the outcome is empty"),
        ("Agreed.", [("", "ben.carter", date(2026, 12, 1))], "the action 1 is empty"),
        ("Agreed.", [("Visit", "ghost.person", date(2026, 12, 1))], "action 1: nobody"),
        ("Agreed.", [("Visit", "ben.carter", date(2026, 11, 25))], "cannot be in the past"),
    ],
)
def test_a_resolution_needs_an_outcome_and_sound_actions(
    directory: Directory,
    wolverhampton: Policy,
    calendar: WorkingCalendar,
    outcome: str,
    actions: list[tuple[str, str, date]],
    message: str,
) -> None:
    dispute = open_(directory, wolverhampton)
    with pytest.raises(DisputeError, match=message):
        dispute.propose_resolution(
            directory.person("ben.carter"),
            directory,
            calendar,
            START,
            outcome=outcome,
            actions=actions,
        )
    assert dispute.resolution is None
    assert dispute.status == Status.OPEN


def test_only_one_resolution_waits_at_a_time(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    with pytest.raises(DisputeError, match="already waiting"):
        propose(directory, dispute, calendar)


def test_the_other_agency_confirms_and_the_dispute_is_resolved(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    now = utc(2026, 11, 27, 9, 30)
    dispute.respond_to_resolution(
        directory.person("amara.okafor"), directory, calendar, now, confirm=True
    )
    assert dispute.status == Status.RESOLVED and not dispute.is_open
    assert dispute.closed_at == now
    assert dispute.resolution is not None
    assert (dispute.resolution.status, dispute.resolution.responded_by) == (
        "confirmed",
        "amara.okafor",
    )
    writing = step(dispute, "outcome-in-writing")
    assert (writing.status, writing.completed_by, writing.met) == ("done", "amara.okafor", True)
    assert dispute.open_steps() == []
    assert "ResolutionConfirmed" in types(dispute)
    with pytest.raises(NotAllowed, match="is resolved"):
        dispute.escalate(directory.person("amara.okafor"), directory, calendar, now, reason="r")


def test_a_manager_of_the_other_side_may_confirm(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    dispute.respond_to_resolution(
        directory.person("tom.hadley"), directory, calendar, START, confirm=True
    )
    assert dispute.status == Status.RESOLVED


@pytest.mark.parametrize("person_id", ["ben.carter", "rosa.delgado"])
def test_the_proposing_side_cannot_confirm_its_own_resolution(
    directory: Directory,
    wolverhampton: Policy,
    calendar: WorkingCalendar,
    person_id: str,
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    with pytest.raises(NotAllowed, match="the other agency must confirm or reject"):
        dispute.respond_to_resolution(
            directory.person(person_id), directory, calendar, START, confirm=True
        )
    assert dispute.status == Status.RESOLUTION_PROPOSED
    assert dispute.new_events[-1].type == "ActionRefused"


def test_there_is_nothing_to_confirm_before_a_proposal(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    with pytest.raises(NotAllowed, match="no proposed resolution"):
        dispute.respond_to_resolution(
            directory.person("amara.okafor"), directory, calendar, START, confirm=True
        )


def test_a_rejection_needs_a_reason_and_without_one_changes_nothing(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    state = to_data(dispute)
    with pytest.raises(DisputeError, match="say why the resolution is rejected"):
        dispute.respond_to_resolution(
            directory.person("amara.okafor"), directory, calendar, START, confirm=False, reason=" "
        )
    assert to_data(dispute) == state


def test_a_rejected_resolution_reopens_the_step_on_its_original_clock(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    later = START + timedelta(hours=2)
    dispute.respond_to_resolution(
        directory.person("amara.okafor"),
        directory,
        calendar,
        later,
        confirm=False,
        reason="A visit next week is too late.",
    )
    assert dispute.status == Status.OPEN
    assert dispute.resolutions_rejected == 1
    assert dispute.resolution is not None
    assert (dispute.resolution.status, dispute.resolution.reason) == (
        "rejected",
        "A visit next week is too late.",
    )
    assert "resolution_proposed" not in dispute.flags
    forward = step(dispute, "find-way-forward")
    assert (forward.status, forward.due_at, forward.completed_at) == (
        "active",
        utc(2026, 12, 1, 17),
        None,
    )
    assert step(dispute, "outcome-in-writing").status == "cancelled"
    assert dispute.new_events[-1].data == {"reason": "A visit next week is too late.", "stage": 1}


def test_a_new_proposal_after_a_rejection_gets_its_own_deadline_to_confirm(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    dispute.respond_to_resolution(
        directory.person("amara.okafor"), directory, calendar, START, confirm=False, reason="No."
    )
    second = utc(2026, 11, 27, 12)  # Fri 27 Nov
    propose(directory, dispute, calendar, second)
    writing = step(dispute, "outcome-in-writing")
    # Mon 30 Nov, Tue 1 Dec: counted from the second proposal.
    assert (writing.status, writing.due_at) == ("active", utc(2026, 12, 1, 17))
    assert dispute.next_due is writing
    dispute.respond_to_resolution(
        directory.person("amara.okafor"), directory, calendar, second, confirm=True
    )
    assert step(dispute, "outcome-in-writing").status == "done"


def test_escalating_withdraws_a_waiting_proposal(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    dispute.escalate(directory.person("amara.okafor"), directory, calendar, START, reason="No.")
    assert dispute.status == Status.OPEN and dispute.stage == 2
    assert dispute.resolution is not None and dispute.resolution.status == "withdrawn"
    assert "resolution_proposed" not in dispute.flags


# --- delay, learning, withdrawal and closing -------------------------------------------------


def test_barnet_past_its_overall_target_needs_a_reason_for_delay_from_the_raising_agency(
    directory: Directory,
) -> None:
    barnet = load_preset("barnet")
    calendar = barnet.calendar()
    dispute = open_(directory, barnet, category="level-of-need")
    assert barnet.overall_target is not None
    assert barnet.overall_target.on_breach == "reason_for_delay"
    # Five working days from Thu 26 Nov: Fri 27, Mon 30, Tue 1, Wed 2, Thu 3 Dec.
    assert dispute.overall_due == utc(2026, 12, 3, 17)
    assert dispute.delay_reason_required is False
    # The timekeeper notices the breach (on the next working morning, Fri 4 Dec).
    past = utc(2026, 12, 4, 12)
    timers.fire_due(dispute, directory, calendar, past)
    assert "OverallTargetBreached" in types(dispute)
    assert dispute.delay_reason_required is True
    with pytest.raises(NotAllowed, match="the escalating agency records the reasons for delay"):
        dispute.record_delay_reason(
            directory.person("ben.carter"), directory, past, reason="Busy.", safety_confirmed=True
        )
    assert dispute.delay_reason_required is True
    with pytest.raises(DisputeError, match="the reason for delay is empty"):
        dispute.record_delay_reason(
            directory.person("tom.hadley"), directory, past, reason="", safety_confirmed=True
        )
    dispute.record_delay_reason(
        directory.person("tom.hadley"),
        directory,
        past,
        reason="The GP's report is not back yet.",
        safety_confirmed=True,
    )
    assert dispute.delay_reason_required is False
    assert dispute.delay_reasons == [
        {
            "by": "tom.hadley",
            "at": past.isoformat(),
            "reason": "The GP's report is not back yet.",
            "safety_confirmed": True,
        }
    ]
    recorded = dispute.new_events[-1]
    assert (recorded.type, recorded.data["safety_confirmed"]) == ("DelayReasonRecorded", True)


def test_barnet_stage_one_is_due_the_same_working_day(directory: Directory) -> None:
    barnet = load_preset("barnet")
    dispute = open_(directory, barnet, category="level-of-need")
    assert step(dispute, "discuss").due_at == utc(2026, 11, 26, 17)


def test_learning_points_are_recorded_even_after_resolution(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    dispute.respond_to_resolution(
        directory.person("amara.okafor"), directory, calendar, START, confirm=True
    )
    later = START + timedelta(days=7)
    dispute.record_learning(
        directory.person("helen.marsh"), directory, later, text=" Share closure criteria. "
    )
    assert dispute.learning == [
        {"by": "helen.marsh", "at": later.isoformat(), "text": "Share closure criteria."}
    ]
    assert dispute.new_events[-1].type == "LearningRecorded"
    with pytest.raises(NotAllowed):
        dispute.record_learning(directory.person("dan.fielding"), directory, later, text="Hi.")
    assert len(dispute.learning) == 1


@pytest.mark.parametrize("person_id", ["amara.okafor", "tom.hadley", "helen.marsh"])
def test_the_raiser_their_managers_or_an_admin_may_withdraw(
    directory: Directory, wolverhampton: Policy, person_id: str
) -> None:
    dispute = open_(directory, wolverhampton)
    dispute.withdraw(directory.person(person_id), directory, START, reason="Agreed by phone.")
    assert dispute.status == Status.WITHDRAWN and not dispute.is_open
    assert dispute.closed_at == START
    assert dispute.open_steps() == []
    withdrawn = dispute.new_events[-1]
    assert (withdrawn.type, withdrawn.actor) == ("DisputeWithdrawn", person_id)


@pytest.mark.parametrize(
    ("person_id", "reason"),
    [
        ("ben.carter", "only the agency that raised a dispute can withdraw it"),
        ("rosa.delgado", "only the agency that raised a dispute can withdraw it"),
        ("dan.fielding", "you are not in either agency of this dispute"),
    ],
)
def test_the_other_agency_cannot_withdraw(
    directory: Directory, wolverhampton: Policy, person_id: str, reason: str
) -> None:
    dispute = open_(directory, wolverhampton)
    with pytest.raises(NotAllowed) as caught:
        dispute.withdraw(directory.person(person_id), directory, START, reason="Not needed.")
    assert str(caught.value) == reason
    assert dispute.status == Status.OPEN


def test_a_withdrawn_dispute_cannot_be_withdrawn_or_escalated_again(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    amara = directory.person("amara.okafor")
    dispute.withdraw(amara, directory, START, reason="Resolved by phone.")
    with pytest.raises(NotAllowed, match="WST-2026-0001 is withdrawn"):
        dispute.withdraw(amara, directory, START, reason="Again.")
    with pytest.raises(DisputeError, match="is withdrawn"):
        dispute.escalate(None, directory, calendar, START, reason="Automatic.")


def test_only_an_admin_closes_a_dispute_and_only_once(
    directory: Directory, wolverhampton: Policy
) -> None:
    dispute = open_(directory, wolverhampton)
    with pytest.raises(NotAllowed, match="only a partnership admin can close"):
        dispute.close(directory.person("olivia.brandt"), directory, START, reason="Done.")
    helen = directory.person("helen.marsh")
    later = START + timedelta(days=1)
    dispute.close(helen, directory, later, reason="Dealt with at the board.")
    assert (dispute.status, dispute.closed_at) == (Status.CLOSED, later)
    assert dispute.open_steps() == []
    with pytest.raises(DisputeError, match="already closed"):
        dispute.close(helen, directory, later, reason="Again.")


def test_closing_a_resolved_dispute_keeps_the_day_it_was_resolved(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    propose(directory, dispute, calendar)
    dispute.respond_to_resolution(
        directory.person("amara.okafor"), directory, calendar, START, confirm=True
    )
    dispute.close(
        directory.person("george.ellis"), directory, START + timedelta(days=30), reason="Filed."
    )
    assert (dispute.status, dispute.closed_at) == (Status.CLOSED, START)


# --- the record and persistence ---------------------------------------------------------------


def busy_dispute(directory: Directory, policy: Policy, calendar: WorkingCalendar) -> Dispute:
    """A dispute that has seen most commands: notes, acknowledgements, rejection, escalation."""
    dispute = open_(directory, policy, immediate_risk=True)
    t = START
    dispute.acknowledge(directory.person("ben.carter"), directory, calendar, t)
    dispute.add_note(directory.person("amara.okafor"), directory, calendar, t, text="Called.")
    propose(directory, dispute, calendar, t)
    dispute.respond_to_resolution(
        directory.person("amara.okafor"), directory, calendar, t, confirm=False, reason="No."
    )
    dispute.escalate(directory.person("amara.okafor"), directory, calendar, t, reason="Up.")
    dispute.acknowledge(directory.person("rosa.delgado"), directory, calendar, t)
    dispute.record_delay_reason(
        directory.person("tom.hadley"), directory, t, reason="Waiting.", safety_confirmed=False
    )
    dispute.record_learning(directory.person("helen.marsh"), directory, t, text="Learn.")
    with pytest.raises(NotAllowed):
        dispute.withdraw(directory.person("ben.carter"), directory, t, reason="No.")
    return dispute


def test_events_are_only_ever_appended(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    dispute = open_(directory, wolverhampton)
    seen: list[object] = []
    commands = [
        lambda: dispute.acknowledge(directory.person("ben.carter"), directory, calendar, START),
        lambda: dispute.add_note(
            directory.person("ben.carter"), directory, calendar, START, text="Read the file."
        ),
        lambda: propose(directory, dispute, calendar),
        lambda: dispute.respond_to_resolution(
            directory.person("amara.okafor"), directory, calendar, START, confirm=True
        ),
    ]
    for command in commands:
        before = deepcopy(dispute.new_events)
        command()
        assert dispute.new_events[: len(before)] == before
        assert len(dispute.new_events) > len(before)
        seen.append(dispute.new_events[-1].type)
    assert seen == ["Acknowledged", "NoteAdded", "StepCompleted", "StepCompleted"]


def test_to_data_and_from_data_round_trip_a_dispute_exactly(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    original = busy_dispute(directory, wolverhampton, calendar)
    data = to_data(original)
    stored = json.loads(json.dumps(data))
    rebuilt = from_data(stored, wolverhampton, version=7)
    assert to_data(rebuilt) == data
    assert rebuilt.version == 7
    # Everything but the unsaved events and the version is equal, field by field.
    assert replace(rebuilt, new_events=[], version=0) == replace(original, new_events=[])
    # The same command on both gives the same events and the same state.
    later = START + timedelta(hours=5)
    for dispute in (original, rebuilt):
        dispute.new_events = []
        dispute.escalate(directory.person("tom.hadley"), directory, calendar, later, reason="Up.")
    assert rebuilt.new_events == original.new_events
    assert to_data(rebuilt) == to_data(original)


def test_a_rebuilt_dispute_shares_no_state_with_its_data_or_its_original(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    original = open_(directory, wolverhampton)
    data = to_data(original)
    saved = deepcopy(data)
    first = from_data(data, wolverhampton)
    second = from_data(data, wolverhampton)
    first.acknowledge(directory.person("ben.carter"), directory, calendar, START)
    first.record_learning(directory.person("amara.okafor"), directory, START, text="Learn.")
    assert data == saved
    assert second.acknowledged_by("receiving") is None and second.learning == []
    assert original.acknowledged_by("receiving") is None


def test_a_dispute_keeps_the_policy_it_was_opened_under(
    directory: Directory, wolverhampton: Policy, calendar: WorkingCalendar
) -> None:
    snapshot = wolverhampton.snapshot()
    dispute = open_(directory, wolverhampton)
    # The partnership later gives line managers 5 working days instead of 2.
    edited_data = deepcopy(snapshot)
    edited_data["stages"][1]["steps"][0]["deadline"] = {"kind": "working_days", "amount": 5}
    edited = policy_from_snapshot(edited_data)
    assert edited.fingerprint != wolverhampton.fingerprint
    # The open dispute is rebuilt from its own snapshot, not from the edited policy.
    kept = policy_from_snapshot(json.loads(json.dumps(snapshot)))
    assert kept.fingerprint == dispute.new_events[0].data["policy_fingerprint"]
    rebuilt = from_data(to_data(dispute), kept)
    rebuilt.escalate(directory.person("amara.okafor"), directory, calendar, START, reason="Up.")
    # Thu 26 Nov + 2 working days (the policy it opened under): Mon 30 Nov.
    assert step(rebuilt, "managers-resolve").due_at == utc(2026, 11, 30, 17)
    fresh = open_(directory, edited)
    fresh.escalate(directory.person("amara.okafor"), directory, calendar, START, reason="Up.")
    assert step(fresh, "managers-resolve").due_at == utc(2026, 12, 3, 17)


# --- Lincolnshire: immediately, same working day, urgent and non-urgent ------------------------


@pytest.fixture(scope="module")
def lincolnshire() -> Policy:
    return load_preset("lincolnshire")


@pytest.fixture(scope="module")
def with_slos(directory: Directory) -> Directory:
    """The example directory with fictional Senior Liaison Officers and an independent chair."""
    return directory.with_people(
        [
            Person(
                id="nina.sloane",
                name="Nina Sloane",
                agency="cwc-childrens",
                roles=("senior_liaison_officer",),
            ),
            Person(
                id="omar.vance", name="Omar Vance", agency="rwt", roles=("senior_liaison_officer",)
            ),
            Person(
                id="iris.calder", name="Iris Calder", agency="wst", roles=("independent_chair",)
            ),
        ]
    )


def test_lincolnshire_step_one_is_due_immediately_and_the_plan_counts_from_the_acknowledgement(
    with_slos: Directory, lincolnshire: Policy
) -> None:
    calendar = lincolnshire.calendar()
    dispute = open_(with_slos, lincolnshire)
    ack = step(dispute, "acknowledge")
    assert (ack.status, ack.due_at) == ("active", START)
    assert [s.step_id for s in dispute.steps] == ["acknowledge"]
    # Acknowledged the next morning, Fri 27 Nov: the plan is due 2 working days later.
    acknowledged = utc(2026, 11, 27, 9, 30)
    dispute.acknowledge(with_slos.person("ben.carter"), with_slos, calendar, acknowledged)
    ack = step(dispute, "acknowledge")
    assert (ack.status, ack.completed_at, ack.completed_by) == (
        "done",
        acknowledged,
        "ben.carter",
    )
    assert step(dispute, "agree-plan").due_at == utc(2026, 12, 1, 17)


def lincolnshire_at_stage_three(directory: Directory, policy: Policy, **changes: Any) -> Dispute:
    calendar = policy.calendar()
    dispute = open_(directory, policy, **changes)
    dispute.escalate(directory.person("amara.okafor"), directory, calendar, START, reason="r")
    dispute.escalate(directory.person("tom.hadley"), directory, calendar, START, reason="r")
    assert dispute.stage == 3
    return dispute


def test_lincolnshire_slos_are_contacted_immediately_and_both_must_acknowledge(
    with_slos: Directory, lincolnshire: Policy
) -> None:
    calendar = lincolnshire.calendar()
    dispute = lincolnshire_at_stage_three(with_slos, lincolnshire)
    assert ids(dispute.parties(with_slos)) == ["nina.sloane", "omar.vance"]
    contact = step(dispute, "contact-slos")
    assert contact.due_at == START
    dispute.acknowledge(with_slos.person("nina.sloane"), with_slos, calendar, START)
    assert step(dispute, "contact-slos").status == "active"
    both = utc(2026, 11, 27, 11)
    dispute.acknowledge(with_slos.person("omar.vance"), with_slos, calendar, both)
    assert step(dispute, "contact-slos").status == "done"
    # 48 hours as 2 working days from Fri 27 Nov: Tue 1 Dec.
    assert step(dispute, "agree-plan").due_at == utc(2026, 12, 1, 17)


def test_lincolnshire_step_four_urgent_route_sets_a_meeting_date_within_24_hours(
    with_slos: Directory, lincolnshire: Policy
) -> None:
    calendar = lincolnshire.calendar()
    dispute = lincolnshire_at_stage_three(with_slos, lincolnshire)
    friday_afternoon = utc(2026, 11, 27, 16, 30)
    dispute.escalate(
        with_slos.person("nina.sloane"),
        with_slos,
        calendar,
        friday_afternoon,
        reason="The child is still at home.",
        urgent=True,
    )
    assert dispute.stage == 4 and "urgent" in dispute.flags
    # Same working day: close of Friday. 24 hours: clock hours, into Saturday.
    assert step(dispute, "decide-route").due_at == utc(2026, 11, 27, 17)
    assert step(dispute, "set-meeting-date").due_at == utc(2026, 11, 28, 16, 30)
    assert {s.step_id for s in dispute.steps if s.stage == 4} == {
        "decide-route",
        "set-meeting-date",
    }
    # Recording that the date is set starts the chaired meeting, on a 2-working-day local target.
    noted = utc(2026, 11, 28, 9)
    dispute.add_note(
        with_slos.person("nina.sloane"),
        with_slos,
        calendar,
        noted,
        text="Meeting set for Monday 10:00.",
    )
    assert step(dispute, "set-meeting-date").status == "done"
    meeting = step(dispute, "chaired-meeting")
    assert (meeting.local_target, meeting.due_at) == (True, utc(2026, 12, 1, 17))
    assert ids(dispute.parties(with_slos)) == ["iris.calder"]


def test_lincolnshire_step_four_non_urgent_route_refers_learning_on_a_local_target(
    with_slos: Directory, lincolnshire: Policy
) -> None:
    calendar = lincolnshire.calendar()
    dispute = lincolnshire_at_stage_three(with_slos, lincolnshire, immediate_risk=True)
    friday_afternoon = utc(2026, 11, 27, 16, 30)
    dispute.escalate(
        with_slos.person("omar.vance"),
        with_slos,
        calendar,
        friday_afternoon,
        reason="Lessons to learn, no risk now.",
        urgent=False,
    )
    assert "urgent" not in dispute.flags
    assert {s.step_id for s in dispute.steps if s.stage == 4} == {"decide-route", "refer-to-ppet"}
    referral = step(dispute, "refer-to-ppet")
    # No fixed timescale: the policy's local target of 5 working days from Fri 27 Nov.
    assert referral.local_target is True
    assert referral.due_at == utc(2026, 12, 4, 17)


def test_an_immediate_risk_sends_lincolnshire_step_four_down_the_urgent_route(
    with_slos: Directory, lincolnshire: Policy
) -> None:
    calendar = lincolnshire.calendar()
    dispute = lincolnshire_at_stage_three(with_slos, lincolnshire, immediate_risk=True)
    dispute.escalate(with_slos.person("nina.sloane"), with_slos, calendar, START, reason="r")
    assert "set-meeting-date" in {s.step_id for s in dispute.open_steps()}
    assert "refer-to-ppet" not in {s.step_id for s in dispute.steps}


@pytest.mark.parametrize(
    "escalated",
    [
        utc(2026, 11, 27, 17, 30),  # Friday after close
        utc(2026, 11, 28, 10),  # Saturday
    ],
)
def test_lincolnshire_same_working_day_after_hours_means_the_next_working_day(
    with_slos: Directory, lincolnshire: Policy, escalated: datetime
) -> None:
    calendar = lincolnshire.calendar()
    dispute = lincolnshire_at_stage_three(with_slos, lincolnshire)
    dispute.escalate(None, with_slos, calendar, escalated, reason="Deadline passed.", urgent=False)
    assert step(dispute, "decide-route").due_at == utc(2026, 11, 30, 17)


@pytest.mark.parametrize("person_id", ["ben.carter", "tom.hadley"])
def test_a_newer_copy_of_a_person_is_still_recognised(
    directory: Directory, wolverhampton: Policy, person_id: str
) -> None:
    # A Slack id remembered meanwhile makes a new copy of the person: who may act is decided
    # by directory id, so the copy in one request and the directory of another still agree.
    dispute = open_(directory, wolverhampton)
    copy = directory.person(person_id).model_copy(update={"slack_id": "U0NEWCOPY"})
    assert copy != directory.person(person_id)
    assert dispute.allowed(copy, Action.VIEW, directory) is None
    assert dispute.allowed(copy, Action.ESCALATE, directory) is None
