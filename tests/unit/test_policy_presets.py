"""The preset policies as data, the timelines they give, and how a bad policy file is reported."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from shared_files import shared

from bot.policy import (
    PRESETS,
    PlannedStep,
    Policy,
    load_policy_file,
    load_preset,
    plan_timeline,
)
from bot.workdays import WorkingCalendar
from bot.yamlsource import MAX_FILE_BYTES, ConfigError, Problem

LONDON = ZoneInfo("Europe/London")
BANK_HOLIDAYS_FILE = shared("reference/uk-bank-holidays.json")
CALL_999 = "Call 999 if anyone is in immediate danger."
PARTIES = ("both", "raising", "receiving")

# The role vocabulary the presets share; Wolverhampton, written first, also names sacg_chair.
ROLE_VOCABULARY = {
    "practitioner",
    "line_manager",
    "designated_safeguarding_lead",
    "senior_manager",
    "senior_liaison_officer",
    "partnership_representative",
    "board_manager",
    "head_of_safeguarding",
    "board_chair",
    "panel_chair",
    "independent_chair",
    "on_call",
    "director",
    "deputy_team_manager",
    "team_manager",
    "head_of_service",
    "operations_manager",
    "partnership_manager",
}
NEW_PRESETS = ("lincolnshire", "barnet", "harrow", "worcestershire")

# What each source itself sends elsewhere (Worcestershire and Barnet name nothing: their
# presets only signpost the procedures every agency has).
REDIRECTS = {
    "wolverhampton": {"complaint", "allegation", "whistleblowing", "single-agency"},
    "lincolnshire": {"complaint", "allegation"},
    "barnet": {"complaint", "allegation", "whistleblowing"},
    "harrow": {
        "complaint",
        "allegation",
        "whistleblowing",
        "cp-conference-dissent",
        "lac-review-dissent",
    },
    "worcestershire": {"complaint", "allegation", "whistleblowing", "single-agency"},
}


def london(y: int, m: int, d: int, hh: int = 17, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=LONDON)


def timeline(
    policy: Policy, start: datetime, calendar: WorkingCalendar | None = None
) -> dict[tuple[int, str], PlannedStep]:
    rows = plan_timeline(policy, start, calendar or policy.calendar())
    return {(r.stage, r.step): r for r in rows}


def due_of(row: PlannedStep) -> datetime:
    assert row.due is not None, f"{row.step} has no fixed due date"
    return row.due


def due_days(rows: dict[tuple[int, str], PlannedStep]) -> set[date]:
    return {r.due.astimezone(LONDON).date() for r in rows.values() if r.due is not None}


# --- Every preset -------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_under_its_own_id(name: str) -> None:
    policy = load_preset(name)

    assert policy.id == name
    assert [s.number for s in policy.stages] == list(range(1, policy.last_stage + 1))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_offers_categories_including_something_else(name: str) -> None:
    policy = load_preset(name)
    ids = [c.id for c in policy.categories]

    assert len(ids) >= 4
    assert ids[-1] == "other"


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_redirects_what_its_source_sends_elsewhere(name: str) -> None:
    policy = load_preset(name)
    redirects = {o.id: o.redirect for o in policy.out_of_scope}

    assert REDIRECTS[name] <= set(redirects)
    assert "complaints procedure" in redirects["complaint"]
    assert "allegations" in redirects["allegation"].lower()
    if "whistleblowing" in redirects:
        assert "whistleblowing" in redirects["whistleblowing"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_tells_people_to_call_999_at_immediate_risk_and_out_of_hours(
    name: str,
) -> None:
    policy = load_preset(name)

    assert policy.immediate_risk.route == "designated_safeguarding_lead"
    assert CALL_999 in policy.immediate_risk.guidance
    assert CALL_999 in policy.out_of_hours.guidance


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_plans_a_date_for_every_step(name: str) -> None:
    policy = load_preset(name)
    rows = plan_timeline(policy, london(2026, 11, 2, 9), policy.calendar())

    assert len(rows) == sum(len(s.steps) for s in policy.stages)
    assert all((r.due is None) != (r.local_target_due is None) for r in rows)


@pytest.mark.parametrize("name", NEW_PRESETS)
def test_presets_name_only_roles_from_the_shared_vocabulary(name: str) -> None:
    assert load_preset(name).roles() <= ROLE_VOCABULARY


@pytest.mark.parametrize("name", NEW_PRESETS)
def test_every_step_of_a_preset_quotes_its_source(name: str) -> None:
    policy = load_preset(name)

    assert all(step.source for stage in policy.stages for step in stage.steps)


# --- Wolverhampton ------------------------------------------------------------------------


def test_wolverhampton_timeline_matches_the_tables_cumulative_working_days() -> None:
    policy = load_preset("wolverhampton")
    calendar = policy.calendar()
    start = london(2026, 11, 2, 9)
    rows = timeline(policy, start, calendar)

    cumulative = {
        (1, "raise"): 2,
        (1, "find-way-forward"): 5,
        (2, "managers-resolve"): 7,
        (3, "senior-dialogue"): 10,
        (4, "raise-with-representative"): 12,
    }
    for key, days in cumulative.items():
        assert rows[key].due == calendar.add_working_days(start, days), key
    assert policy.overall_target is not None
    assert policy.overall_target.deadline.due(start, calendar) == rows[(3, "senior-dialogue")].due


def test_the_official_list_has_the_christmas_2026_bank_holidays_the_calendar_skips() -> None:
    official = json.loads(BANK_HOLIDAYS_FILE.read_text(encoding="utf-8"))

    def listed(division: str) -> set[str]:
        return {e["date"] for e in official[division]["events"]}

    england, scotland = listed("england-and-wales"), listed("scotland")
    assert {"2026-12-25", "2026-12-28", "2027-01-01"} <= england & scotland
    assert "2027-01-04" in scotland
    assert "2027-01-04" not in england
    assert "2026-12-24" not in england | scotland
    for nation, days in (("ENG", england), ("SCT", scotland)):
        calendar = WorkingCalendar(nation)
        for text in ("2026-12-24", "2026-12-25", "2026-12-28", "2027-01-01", "2027-01-04"):
            assert calendar.is_working_day(date.fromisoformat(text)) == (text not in days)


def test_wolverhampton_timeline_over_christmas_skips_english_bank_holidays() -> None:
    policy = load_preset("wolverhampton")
    rows = timeline(policy, london(2026, 12, 21, 10))

    # Thu 24 Dec is a working day; Fri 25 and Mon 28 Dec and Fri 1 Jan are not.
    assert {r: due_of(row) for r, row in rows.items()} == {
        (1, "raise"): london(2026, 12, 23),
        (1, "find-way-forward"): london(2026, 12, 30),
        (1, "outcome-in-writing"): london(2027, 1, 4),
        (2, "managers-resolve"): london(2027, 1, 4),
        (2, "outcome-in-writing"): london(2027, 1, 6),
        (3, "refer-in-writing"): london(2027, 1, 5),
        (3, "senior-dialogue"): london(2027, 1, 7),
        (3, "outcome-in-writing"): london(2027, 1, 11),
        (4, "raise-with-representative"): london(2027, 1, 11),
        (4, "representatives-meet"): london(2027, 1, 13),
        (4, "director-writes-to-chair"): london(2027, 1, 15),
        (4, "chair-decides"): london(2027, 1, 22),
        (4, "outcome-in-writing"): london(2027, 1, 15),
    }
    assert not due_days(rows) & {date(2026, 12, 25), date(2026, 12, 28), date(2027, 1, 1)}


def test_wolverhampton_timeline_in_scotland_also_skips_the_2nd_january_holiday() -> None:
    policy = load_preset("wolverhampton")
    rows = timeline(policy, london(2026, 12, 21, 10), WorkingCalendar("SCT"))

    # Sat 2 Jan 2027 is a Scottish bank holiday, observed on Mon 4 Jan.
    assert {r: due_of(row) for r, row in rows.items()} == {
        (1, "raise"): london(2026, 12, 23),
        (1, "find-way-forward"): london(2026, 12, 30),
        (1, "outcome-in-writing"): london(2027, 1, 5),
        (2, "managers-resolve"): london(2027, 1, 5),
        (2, "outcome-in-writing"): london(2027, 1, 7),
        (3, "refer-in-writing"): london(2027, 1, 6),
        (3, "senior-dialogue"): london(2027, 1, 8),
        (3, "outcome-in-writing"): london(2027, 1, 12),
        (4, "raise-with-representative"): london(2027, 1, 12),
        (4, "representatives-meet"): london(2027, 1, 14),
        (4, "director-writes-to-chair"): london(2027, 1, 18),
        (4, "chair-decides"): london(2027, 1, 25),
        (4, "outcome-in-writing"): london(2027, 1, 18),
    }
    holidays = {date(2026, 12, 25), date(2026, 12, 28), date(2027, 1, 1), date(2027, 1, 4)}
    assert not due_days(rows) & holidays


# --- Lincolnshire -------------------------------------------------------------------------


def test_lincolnshire_step_two_is_due_five_working_days_after_step_ones_plan() -> None:
    policy = load_preset("lincolnshire")
    calendar = policy.calendar()
    start = london(2026, 11, 2, 9)
    rows = timeline(policy, start, calendar)

    assert rows[(1, "acknowledge")].due == start
    assert rows[(1, "agree-plan")].due == calendar.add_working_days(start, 2)
    plan = due_of(rows[(1, "agree-plan")])
    assert rows[(2, "managers-discuss")].due == calendar.add_working_days(plan, 5)
    assert rows[(2, "managers-discuss")].due == london(2026, 11, 11)


def test_lincolnshire_step_four_takes_the_urgent_or_the_non_urgent_route() -> None:
    policy = load_preset("lincolnshire")
    stage = policy.stage(4)
    rows = timeline(policy, london(2026, 11, 2, 9))

    assert [s.id for s in stage.steps_for()] == ["decide-route", "refer-to-ppet"]
    assert [s.id for s in stage.steps_for({"urgent"})] == [
        "decide-route",
        "set-meeting-date",
        "chaired-meeting",
    ]
    step_three_ends = due_of(rows[(3, "agree-plan")])
    assert rows[(4, "set-meeting-date")].due == step_three_ends + timedelta(hours=24)
    assert rows[(4, "refer-to-ppet")].due is None
    assert policy.after_resolution.learning_to == "LSCB PPET subgroup"


def test_lincolnshire_out_of_hours_means_the_on_call_manager_and_director_system() -> None:
    policy = load_preset("lincolnshire")

    assert policy.nation == "ENG"
    assert policy.out_of_hours.route == "on_call"
    assert "9am to 5pm" in policy.out_of_hours.guidance
    assert "on-call manager and director system" in policy.out_of_hours.guidance


# --- Barnet -------------------------------------------------------------------------------


def test_barnet_stage_two_climbs_the_line_management_ladder_the_same_working_day() -> None:
    stage = load_preset("barnet").stage(2)
    ladder = [s for s in stage.steps if s.who not in PARTIES]

    assert [s.who for s in ladder] == ["deputy_team_manager", "team_manager", "head_of_service"]
    assert all(s.deadline.kind == "same_working_day" for s in ladder)
    assert ladder[-1].done_when == "resolution_proposed"


def test_barnet_overall_target_is_five_working_days_then_a_reason_for_delay() -> None:
    policy = load_preset("barnet")

    assert policy.overall_target is not None
    assert policy.overall_target.deadline.describe() == "5 working days"
    assert policy.overall_target.on_breach == "reason_for_delay"
    assert policy.escalation.on_breach == "auto"
    assert policy.escalation.grace.describe() == "1 hour"
    assert policy.immediate_risk.also == ["head_of_safeguarding"]
    assert policy.stage(3).roles == {
        "raising": "designated_safeguarding_lead",
        "receiving": "designated_safeguarding_lead",
    }
    assert policy.stage(4).roles["raising"] == "board_manager"
    assert "head_of_safeguarding" in policy.stage(4).advisers


def test_barnet_at_full_stretch_reaches_the_board_manager_on_its_five_day_target() -> None:
    policy = load_preset("barnet")
    calendar = policy.calendar()
    start = london(2026, 11, 2, 9)
    rows = timeline(policy, start, calendar)

    assert policy.overall_target is not None
    target = policy.overall_target.deadline.due(start, calendar)
    assert rows[(4, "agree-way-forward")].due == target == london(2026, 11, 9)


# --- Harrow -------------------------------------------------------------------------------


def test_harrow_has_six_stages_with_local_targets_instead_of_fixed_timescales() -> None:
    policy = load_preset("harrow")
    calendar = policy.calendar()
    rows = timeline(policy, london(2026, 11, 2, 9), calendar)

    assert policy.last_stage == 6
    assert policy.escalation.on_breach == "ask"
    # The one fixed timescale: the Board's report on implementation within 3 months.
    report = rows.pop((5, "implementation-report"))
    panel = rows[(5, "panel-decides")].local_target_due
    assert panel is not None
    assert report.due == calendar.add_working_days(panel, 65)
    for key, row in rows.items():
        assert row.due is None, key
        assert row.local_target_due is not None, key


def test_harrow_redirects_dissent_at_conferences_and_looked_after_reviews() -> None:
    redirects = {o.id: o.redirect for o in load_preset("harrow").out_of_scope}

    assert "minutes" in redirects["cp-conference-dissent"]
    assert "decision stands" in redirects["cp-conference-dissent"]
    assert "Independent Reviewing Officer" in redirects["lac-review-dissent"]


# --- Worcestershire -----------------------------------------------------------------------


def test_worcestershire_managers_liaise_within_24_hours_of_stage_two() -> None:
    policy = load_preset("worcestershire")
    rows = timeline(policy, london(2026, 11, 2, 9))
    first = policy.stage(2).steps[0]

    assert first.deadline.describe() == "24 hours"
    assert first.anchor == "stage_start"
    assert rows[(1, "discuss")].due == london(2026, 11, 3)
    assert rows[(2, "managers-liaise")].due == london(2026, 11, 4)


def test_worcestershire_slo_can_be_consulted_at_every_stage() -> None:
    policy = load_preset("worcestershire")

    assert policy.last_stage == 4
    assert all("senior_liaison_officer" in s.advisers for s in policy.stages)
    assert "designated_safeguarding_lead" in policy.stage(2).advisers
    assert [policy.stage(n).steps[0].deadline.kind for n in (3, 4)] == ["same_working_day"] * 2
    assert all(s.on_resolution for s in policy.stages)
    assert policy.after_resolution.learning_to == "inter-agency case review group"


# --- Bad policy files ---------------------------------------------------------------------

VALID = """\
id: test
name: Test partnership
version: "1"
source: "a test"
nation: ENG
working_hours: {start: "09:00", end: "17:00"}
immediate_risk:
  guidance: "Tell your designated safeguarding lead now. Call 999 if anyone is in immediate danger."
out_of_hours:
  guidance: "Use your on-call manager. Call 999 if anyone is in immediate danger."
categories:
  - {id: other, label: "Something else"}
stages:
  - number: 1
    name: Practitioners
    roles: {raising: practitioner, receiving: practitioner}
    steps:
      - id: discuss
        title: "Discuss it"
        deadline: 2 working days
  - number: 2
    name: Managers
    roles: {raising: line_manager, receiving: line_manager}
    steps:
      - id: resolve
        title: "Resolve it"
        deadline: 2 working days
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)


def refused(path: Path) -> tuple[str, Problem]:
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    assert len(caught.value.problems) == 1
    return str(caught.value), caught.value.problems[0]


def test_a_valid_policy_file_loads(tmp_path: Path) -> None:
    policy = load_policy_file(write(tmp_path, VALID))

    assert [s.name for s in policy.stages] == ["Practitioners", "Managers"]


def test_an_unknown_field_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    text = VALID + "        colour: red\n"
    path = write(tmp_path, text)

    message, _ = refused(path)

    line = line_of(text, "colour: red")
    assert f"{path}:{line}: stages[1].steps[0].colour: unknown field" in message


def test_a_misspelt_deadline_rule_is_reported_with_the_rules_people_can_write(
    tmp_path: Path,
) -> None:
    text = VALID.replace("deadline: 2 working days", "deadline: 2 wrking days", 1)
    path = write(tmp_path, text)

    message, _ = refused(path)

    line = line_of(text, "2 wrking days")
    where = f"{path}:{line}: stages[0].steps[0].deadline"
    assert f"{where}: '2 wrking days' is not a deadline rule" in message
    assert "'N working days'" in message


def test_stages_numbered_one_then_three_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("number: 2", "number: 3"))

    message, _ = refused(path)

    assert str(path) in message
    assert "stages must be numbered 1, 2, 3... in order; found [1, 3]" in message


def test_stages_numbered_one_then_three_are_reported_at_the_stages(tmp_path: Path) -> None:
    text = VALID.replace("number: 2", "number: 3")

    _, problem = refused(write(tmp_path, text))

    assert problem.field.startswith("stages")
    assert problem.line in (line_of(text, "stages:"), line_of(text, "number: 3"))


def test_repeated_category_ids_are_reported_at_the_categories(tmp_path: Path) -> None:
    text = VALID.replace(
        '  - {id: other, label: "Something else"}\n',
        '  - {id: other, label: "Something else"}\n  - {id: other, label: "Another"}\n',
    )

    _, problem = refused(write(tmp_path, text))

    assert problem.field == "categories"
    assert problem.line == line_of(text, "categories:")
    assert problem.message == "category ids must be unique; repeated: ['other']"


def test_a_deadline_written_as_a_bare_number_says_how_to_write_it(tmp_path: Path) -> None:
    text = VALID.replace("deadline: 2 working days", "deadline: 2", 1)
    path = write(tmp_path, text)

    message, problem = refused(path)

    assert problem.field == "stages[0].steps[0].deadline"
    assert problem.line == line_of(text, "deadline: 2")  # the first, changed, deadline
    assert problem.message == (
        "2 on its own is not a deadline; write the deadline as '2 working days', '24 hours', "
        "'same working day', 'immediately' or 'no fixed timescale'"
    )
    assert message.startswith(f"{path}:{problem.line}: stages[0].steps[0].deadline: ")


def test_a_stage_with_only_conditional_steps_is_reported_at_that_stage(tmp_path: Path) -> None:
    text = VALID.replace(
        "deadline: 2 working days\n", "deadline: 2 working days\n        condition: urgent\n", 1
    )
    path = write(tmp_path, text)

    message, problem = refused(path)

    assert str(path) in message
    assert problem.field.startswith("stages[0]")
    assert problem.line in (line_of(text, "number: 1"), line_of(text, "steps:"))
    assert "a stage needs at least one step without a condition" in message


def test_a_stage_missing_a_partys_role_is_reported_at_that_stage(tmp_path: Path) -> None:
    text = VALID.replace(
        "roles: {raising: line_manager, receiving: line_manager}", "roles: {raising: line_manager}"
    )
    path = write(tmp_path, text)

    message, problem = refused(path)

    assert str(path) in message
    assert problem.field.startswith("stages[1]")
    assert problem.line in (line_of(text, "number: 2"), line_of(text, "roles: {raising"))
    assert "roles must name a role for both parties; missing ['receiving']" in message


def test_invalid_yaml_is_reported_with_file_and_line(tmp_path: Path) -> None:
    text = VALID.replace('title: "Resolve it"', "title: Resolve it: now")
    path = write(tmp_path, text)

    message, _ = refused(path)

    assert message.startswith(f"{path}:{line_of(text, 'Resolve it: now')}: not valid YAML")


@pytest.mark.parametrize("text", ["", "\n", "# nothing yet\n"])
def test_an_empty_policy_file_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)

    message, _ = refused(path)

    assert message == f"{path}:1: a policy file must be a mapping of fields"


def test_unquoted_clock_times_in_working_hours_are_read_as_times(tmp_path: Path) -> None:
    # PyYAML reads an unquoted 17:00 as the sexagesimal integer 1020.
    text = VALID.replace('{start: "09:00", end: "17:00"}', "{start: 08:30, end: 17:00}")

    policy = load_policy_file(write(tmp_path, text))

    assert policy.working_hours.start == time(8, 30)
    assert policy.working_hours.end == time(17, 0)


def test_a_policy_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "# " + "x" * (6 * 1024 * 1024) + "\n")

    message, problem = refused(path)

    assert problem.file == str(path)
    assert f"the limit is {MAX_FILE_BYTES:,}" in message


def test_a_billion_laughs_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = write(tmp_path, "\n".join(lines) + "\n")

    message, problem = refused(path)

    assert problem.file == str(path)
    assert "alias bomb" in message
