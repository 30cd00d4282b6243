"""The working-day calendar: bank holidays against the official list, deadlines, hours, formats."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shared_files import shared

from bot.workdays import NATIONS, WorkingCalendar, format_day, format_when

LONDON = ZoneInfo("Europe/London")
REFERENCE = shared("reference/uk-bank-holidays.json")
DIVISION_NATIONS = {
    "england-and-wales": ("ENG", "WLS"),
    "scotland": ("SCT",),
    "northern-ireland": ("NIR",),
}
# Bank holidays proclaimed after the reference snapshot was taken. The reference JSON is a
# read-only copy of gov.uk's feed from before February 2026; `holidays` (0.109) already has:
# - 15 June 2026, Scotland: appointed by Royal Proclamation of 3 February 2026 under s.1(3) of
#   the Banking and Financial Dealings Act 1971 (Scotland's first men's World Cup finals match
#   since 1998); gov.uk's live feed now lists it as "World Cup bank holiday".
# The calendar is right to count it; `test_later_proclamations_are_still_missing_from_the_
# reference` fails once the reference is refreshed, so this table cannot outlive its reason.
PROCLAIMED_AFTER_REFERENCE: dict[str, set[date]] = {"scotland": {date(2026, 6, 15)}}


@cache
def official() -> dict[str, dict[int, set[date]]]:
    """The reference list: division -> year -> bank holiday dates."""
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    found: dict[str, dict[int, set[date]]] = {}
    for division in DIVISION_NATIONS:
        by_year: dict[int, set[date]] = defaultdict(set)
        for event in data[division]["events"]:
            day = date.fromisoformat(event["date"])
            by_year[day.year].add(day)
        found[division] = dict(by_year)
    return found


def official_cases() -> list[tuple[str, str, int]]:
    return [
        (division, nation, year)
        for division, nations in DIVISION_NATIONS.items()
        for nation in nations
        for year in sorted(official()[division])
    ]


def london(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=LONDON)


def at_close_london(d: date) -> datetime:
    return datetime.combine(d, time(17), tzinfo=LONDON).astimezone(UTC)


@pytest.fixture(scope="module")
def eng() -> WorkingCalendar:
    return WorkingCalendar("ENG")


@pytest.fixture(scope="module")
def sct() -> WorkingCalendar:
    return WorkingCalendar("SCT")


# --- bank holidays against the official list ------------------------------------------------


def test_the_reference_list_covers_every_division_and_several_years() -> None:
    for division in DIVISION_NATIONS:
        assert len(official()[division]) >= 5, division


@pytest.mark.parametrize(("division", "nation", "year"), official_cases())
def test_bank_holidays_equal_the_official_list_for_every_nation_and_year(
    division: str, nation: str, year: int
) -> None:
    expected = official()[division][year] | {
        d for d in PROCLAIMED_AFTER_REFERENCE.get(division, set()) if d.year == year
    }
    assert set(WorkingCalendar(nation).bank_holidays(year)) == expected


@pytest.mark.parametrize(("division", "nation", "year"), official_cases())
def test_no_official_bank_holiday_is_a_working_day(division: str, nation: str, year: int) -> None:
    calendar = WorkingCalendar(nation)
    assert [d for d in official()[division][year] if calendar.is_working_day(d)] == []


def test_later_proclamations_are_still_missing_from_the_reference() -> None:
    for division, days in PROCLAIMED_AFTER_REFERENCE.items():
        for day in days:
            assert day not in official()[division].get(day.year, set()), (
                f"the reference now lists {day} for {division}: drop it from "
                "PROCLAIMED_AFTER_REFERENCE"
            )


def test_scotlands_world_cup_bank_holiday_is_not_a_working_day_in_scotland_only() -> None:
    world_cup_monday = date(2026, 6, 15)
    assert not WorkingCalendar("SCT").is_working_day(world_cup_monday)
    for nation in ("ENG", "WLS", "NIR"):
        assert WorkingCalendar(nation).is_working_day(world_cup_monday)


def test_bank_holidays_on_a_weekend_are_replaced_by_their_substitute_day(
    eng: WorkingCalendar,
) -> None:
    holidays_2021 = eng.bank_holidays(2021)
    # Christmas Day and Boxing Day 2021 fell on Saturday and Sunday.
    assert date(2021, 12, 25) not in holidays_2021
    assert date(2021, 12, 26) not in holidays_2021
    assert holidays_2021[date(2021, 12, 27)] == "Christmas Day (substitute day)"
    assert holidays_2021[date(2021, 12, 28)] == "Boxing Day (substitute day)"


def test_england_has_easter_monday_and_the_august_bank_holiday_but_scotland_differs(
    eng: WorkingCalendar, sct: WorkingCalendar
) -> None:
    assert date(2026, 4, 6) in eng.bank_holidays(2026)
    assert date(2026, 8, 31) in eng.bank_holidays(2026)
    assert date(2026, 4, 6) not in sct.bank_holidays(2026)
    assert date(2026, 8, 3) in sct.bank_holidays(2026)
    assert date(2026, 1, 2) in sct.bank_holidays(2026)


# --- adding working days --------------------------------------------------------------------


def test_one_working_day_from_monday_morning_is_tuesday_close_of_business(
    eng: WorkingCalendar,
) -> None:
    due = eng.add_working_days(london(2026, 12, 21, 10, 0), 1)
    assert due == london(2026, 12, 22, 17, 0)
    assert due.tzinfo == UTC


CHRISTMAS_2026_ENG = [
    date(2026, 12, 22),
    date(2026, 12, 23),
    date(2026, 12, 24),
    # Fri 25 Dec Christmas Day, Mon 28 Dec Boxing Day substitute.
    date(2026, 12, 29),
    date(2026, 12, 30),
    date(2026, 12, 31),
    # Fri 1 Jan New Year's Day.
    date(2027, 1, 4),
    date(2027, 1, 5),
]
CHRISTMAS_2026_SCT = [
    *CHRISTMAS_2026_ENG[:6],
    # Fri 1 Jan New Year's Day, Mon 4 Jan the substitute for Sat 2 January.
    date(2027, 1, 5),
    date(2027, 1, 6),
]


@pytest.mark.parametrize(
    ("nation", "expected"), [("ENG", CHRISTMAS_2026_ENG), ("SCT", CHRISTMAS_2026_SCT)]
)
def test_christmas_boxing_day_substitute_and_new_year_are_skipped(
    nation: str, expected: list[date]
) -> None:
    calendar = WorkingCalendar(nation)
    anchor = london(2026, 12, 21, 10, 0)
    dues = [calendar.add_working_days(anchor, n) for n in range(1, len(expected) + 1)]
    assert dues == [at_close_london(d) for d in expected]


@pytest.mark.parametrize(
    ("division", "nation", "expected"),
    [("england-and-wales", "ENG", CHRISTMAS_2026_ENG), ("scotland", "SCT", CHRISTMAS_2026_SCT)],
)
def test_the_weekdays_skipped_over_christmas_2026_are_exactly_the_official_holidays(
    division: str, nation: str, expected: list[date]
) -> None:
    weekdays = [
        date(2026, 12, 22) + timedelta(days=i)
        for i in range((expected[-1] - date(2026, 12, 22)).days + 1)
        if (date(2026, 12, 22) + timedelta(days=i)).weekday() < 5
    ]
    skipped = {d for d in weekdays if d not in expected}
    holidays = official()[division][2026] | official()[division][2027]
    assert skipped == {d for d in holidays if d in weekdays}
    assert skipped  # the window does cross bank holidays


def test_a_friday_anchor_just_before_close_is_due_monday_close(eng: WorkingCalendar) -> None:
    assert eng.add_working_days(london(2026, 11, 6, 16, 59), 1) == london(2026, 11, 9, 17, 0)


def test_a_saturday_anchor_is_due_monday_close(eng: WorkingCalendar) -> None:
    assert eng.add_working_days(london(2026, 11, 7, 11, 0), 1) == london(2026, 11, 9, 17, 0)


def test_an_anchor_after_close_still_only_counts_from_the_next_day(eng: WorkingCalendar) -> None:
    assert eng.add_working_days(london(2026, 11, 4, 23, 30), 2) == london(2026, 11, 6, 17, 0)


def test_a_plain_date_anchor_counts_from_that_date(eng: WorkingCalendar) -> None:
    assert eng.add_working_days(date(2026, 11, 4), 1) == london(2026, 11, 5, 17, 0)


def test_the_anchor_is_read_in_local_time_not_utc(eng: WorkingCalendar) -> None:
    # 23:30Z on Thu 4 June is 00:30 on Fri 5 June in London (BST).
    anchor = datetime(2026, 6, 4, 23, 30, tzinfo=UTC)
    assert eng.add_working_days(anchor, 1) == london(2026, 6, 8, 17, 0)


def test_a_count_of_hundreds_of_working_days_crosses_years(eng: WorkingCalendar) -> None:
    anchor = london(2026, 12, 21, 10, 0)
    due = eng.add_working_days(anchor, 600)
    assert eng.working_days_between(anchor, due) == 600
    assert due.year == 2029


@pytest.mark.parametrize(
    ("anchor", "n", "m"),
    [
        (datetime(2026, 12, 21, 10, tzinfo=LONDON), 3, 4),
        (datetime(2026, 3, 27, 16, 59, tzinfo=LONDON), 1, 1),
        (datetime(2027, 4, 1, 12, tzinfo=UTC), 5, 10),
        (datetime(2019, 12, 31, 9, tzinfo=LONDON), 2, 250),
        (datetime(2022, 9, 16, 17, 30, tzinfo=LONDON), 1, 2),
    ],
)
def test_adding_n_then_m_working_days_equals_adding_n_plus_m(
    eng: WorkingCalendar, anchor: datetime, n: int, m: int
) -> None:
    assert eng.add_working_days(eng.add_working_days(anchor, n), m) == eng.add_working_days(
        anchor, n + m
    )


@given(
    anchor=st.datetimes(
        min_value=datetime(1995, 1, 1), max_value=datetime(2045, 12, 31), timezones=st.just(UTC)
    ),
    n=st.integers(min_value=1, max_value=40),
    m=st.integers(min_value=1, max_value=40),
    nation=st.sampled_from(NATIONS),
)
def test_adding_working_days_composes_for_any_anchor(
    anchor: datetime, n: int, m: int, nation: str
) -> None:
    calendar = WorkingCalendar(nation)
    once = calendar.add_working_days(anchor, n + m)
    assert calendar.add_working_days(calendar.add_working_days(anchor, n), m) == once
    assert calendar.is_working_day(calendar.local(once).date())
    assert calendar.local(once).time() == time(17, 0)
    assert calendar.working_days_between(anchor, once) == n + m


# --- clock changes --------------------------------------------------------------------------


def test_close_of_business_is_17_00_local_in_winter_and_summer(eng: WorkingCalendar) -> None:
    # 2026: clocks go forward on Sun 29 March and back on Sun 25 October.
    assert eng.close_of(date(2026, 3, 27)) == datetime(2026, 3, 27, 17, tzinfo=UTC)
    assert eng.close_of(date(2026, 3, 30)) == datetime(2026, 3, 30, 16, tzinfo=UTC)
    assert eng.close_of(date(2026, 10, 23)) == datetime(2026, 10, 23, 16, tzinfo=UTC)
    assert eng.close_of(date(2026, 10, 26)) == datetime(2026, 10, 26, 17, tzinfo=UTC)


def test_opening_is_09_00_local_either_side_of_the_clock_change(eng: WorkingCalendar) -> None:
    assert eng.opening_of(date(2026, 3, 27)) == datetime(2026, 3, 27, 9, tzinfo=UTC)
    assert eng.opening_of(date(2026, 3, 30)) == datetime(2026, 3, 30, 8, tzinfo=UTC)


def test_a_deadline_spanning_the_spring_clock_change_is_17_00_bst(eng: WorkingCalendar) -> None:
    due = eng.add_working_days(london(2026, 3, 27, 10, 0), 1)
    assert due == datetime(2026, 3, 30, 16, tzinfo=UTC)
    assert eng.local(due).time() == time(17, 0)


def test_a_deadline_spanning_the_autumn_clock_change_is_17_00_gmt(eng: WorkingCalendar) -> None:
    due = eng.add_working_days(london(2026, 10, 23, 10, 0), 1)
    assert due == datetime(2026, 10, 26, 17, tzinfo=UTC)
    assert eng.local(due).time() == time(17, 0)


# --- same working day -----------------------------------------------------------------------


def test_same_working_day_before_close_is_today_at_17_00(eng: WorkingCalendar) -> None:
    assert eng.same_working_day(london(2026, 11, 4, 16, 59)) == london(2026, 11, 4, 17, 0)


def test_same_working_day_at_or_after_close_is_the_next_working_day(
    eng: WorkingCalendar,
) -> None:
    assert eng.same_working_day(london(2026, 11, 4, 17, 0)) == london(2026, 11, 5, 17, 0)
    assert eng.same_working_day(london(2026, 11, 6, 18, 0)) == london(2026, 11, 9, 17, 0)


def test_same_working_day_on_a_bank_holiday_is_the_next_working_day(
    eng: WorkingCalendar,
) -> None:
    # Mon 31 Aug 2026 is England's summer bank holiday.
    assert eng.same_working_day(london(2026, 8, 31, 10, 0)) == london(2026, 9, 1, 17, 0)


def test_same_working_day_early_in_the_morning_is_that_day(eng: WorkingCalendar) -> None:
    assert eng.same_working_day(london(2026, 11, 4, 6, 0)) == london(2026, 11, 4, 17, 0)


# --- working hours --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "inside"),
    [
        (london(2026, 11, 4, 8, 59, 59), False),
        (london(2026, 11, 4, 9, 0), True),
        (london(2026, 11, 4, 16, 59, 59), True),
        (london(2026, 11, 4, 17, 0), False),
        (london(2026, 11, 7, 12, 0), False),  # Saturday
        (london(2026, 12, 25, 12, 0), False),  # Christmas Day
        (datetime(2026, 6, 3, 8, 30, tzinfo=UTC), True),  # 09:30 BST
        (datetime(2026, 6, 3, 16, 30, tzinfo=UTC), False),  # 17:30 BST
    ],
)
def test_working_hours_run_from_opening_inclusive_to_close_exclusive(
    eng: WorkingCalendar, at: datetime, inside: bool
) -> None:
    assert eng.in_working_hours(at) is inside


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (london(2026, 11, 4, 8, 0), london(2026, 11, 4, 9, 0)),
        (london(2026, 11, 4, 9, 0), london(2026, 11, 4, 9, 0)),
        (london(2026, 11, 4, 12, 34), london(2026, 11, 4, 12, 34)),
        (london(2026, 11, 4, 17, 0), london(2026, 11, 5, 9, 0)),
        (london(2026, 11, 6, 20, 0), london(2026, 11, 9, 9, 0)),
        (london(2026, 11, 7, 10, 0), london(2026, 11, 9, 9, 0)),
        (london(2026, 12, 24, 17, 30), london(2026, 12, 29, 9, 0)),
    ],
)
def test_next_working_moment_is_now_in_hours_else_the_next_opening(
    eng: WorkingCalendar, at: datetime, expected: datetime
) -> None:
    moment = eng.next_working_moment(at)
    assert moment == expected
    assert moment.tzinfo == UTC


def test_custom_working_hours_move_opening_and_close() -> None:
    calendar = WorkingCalendar("WLS", start=time(8, 30), end=time(16, 30))
    assert calendar.close_of(date(2026, 11, 4)) == datetime(2026, 11, 4, 16, 30, tzinfo=UTC)
    assert calendar.in_working_hours(london(2026, 11, 4, 8, 30))
    assert not calendar.in_working_hours(london(2026, 11, 4, 16, 30))


def test_another_time_zone_is_honoured() -> None:
    calendar = WorkingCalendar("NIR", tz="America/New_York")
    assert calendar.tz == ZoneInfo("America/New_York")
    assert calendar.close_of(date(2026, 11, 4)) == datetime(2026, 11, 4, 22, tzinfo=UTC)


# --- closures and days ----------------------------------------------------------------------


def test_local_closure_days_are_skipped() -> None:
    calendar = WorkingCalendar("ENG", closures=[date(2026, 12, 24), date(2026, 12, 29)])
    assert not calendar.is_working_day(date(2026, 12, 24))
    assert calendar.add_working_days(london(2026, 12, 22, 10, 0), 1) == london(2026, 12, 23, 17)
    assert calendar.add_working_days(london(2026, 12, 22, 10, 0), 2) == london(2026, 12, 30, 17)
    assert date(2026, 12, 24) not in calendar.bank_holidays(2026)


def test_a_closure_given_as_a_datetime_closes_its_day() -> None:
    calendar = WorkingCalendar("ENG", closures=[datetime(2026, 11, 4, 0, 0)])
    assert not calendar.is_working_day(date(2026, 11, 4))


def test_working_days_in_a_range_include_both_ends(eng: WorkingCalendar) -> None:
    assert eng.working_days_in(date(2026, 12, 24), date(2026, 12, 30)) == [
        date(2026, 12, 24),
        date(2026, 12, 29),
        date(2026, 12, 30),
    ]
    assert eng.working_days_in(date(2026, 12, 30), date(2026, 12, 24)) == []


def test_next_working_day_is_strictly_after(eng: WorkingCalendar) -> None:
    assert eng.next_working_day(date(2026, 11, 4)) == date(2026, 11, 5)
    assert eng.next_working_day(date(2026, 12, 24)) == date(2026, 12, 29)
    assert eng.next_working_day(date(2026, 12, 31)) == date(2027, 1, 4)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 11, 2), date(2026, 11, 6), 4),
        (date(2026, 11, 6), date(2026, 11, 9), 1),
        (date(2026, 11, 6), date(2026, 11, 6), 0),
        (date(2026, 11, 9), date(2026, 11, 6), 0),
        (date(2026, 12, 21), date(2027, 1, 4), 7),
        (london(2026, 11, 2, 16, 0), london(2026, 11, 3, 9, 0), 1),
        (london(2026, 11, 2, 9, 0), london(2026, 11, 2, 16, 0), 0),
    ],
)
def test_working_days_between_counts_days_after_start_up_to_end(
    eng: WorkingCalendar, start: date, end: date, expected: int
) -> None:
    assert eng.working_days_between(start, end) == expected


# --- far-off years --------------------------------------------------------------------------


def test_years_far_in_the_future_work(eng: WorkingCalendar) -> None:
    # 2040: Christmas Tue 25, Boxing Day Wed 26 December.
    assert eng.add_working_days(london(2040, 12, 24, 10), 1) == london(2040, 12, 27, 17)
    assert date(2040, 4, 2) in eng.bank_holidays(2040)  # Easter Monday


def test_years_far_in_the_past_work_after_later_ones_were_loaded() -> None:
    calendar = WorkingCalendar("ENG")
    calendar.add_working_days(london(2026, 1, 5, 10), 1)
    # Fri 31 Dec 1999 Millennium holiday, Mon 3 Jan 2000 New Year's Day substitute.
    assert calendar.add_working_days(london(1999, 12, 30, 10), 1) == london(2000, 1, 4, 17)
    assert calendar.add_working_days(london(2026, 1, 5, 10), 1) == london(2026, 1, 6, 17)


def test_a_calendar_answers_for_distant_years_in_any_order() -> None:
    calendar = WorkingCalendar("NIR")
    assert date(2050, 3, 17) in calendar.bank_holidays(2050)  # St Patrick's Day, a Thursday
    assert date(1990, 7, 12) in calendar.bank_holidays(1990)  # Battle of the Boyne, a Thursday
    assert calendar.working_days_between(date(1990, 1, 1), date(2050, 1, 1)) > 14_000


# --- formatting -----------------------------------------------------------------------------


def test_format_when_reads_day_date_month_and_24_hour_time() -> None:
    assert format_when(datetime(2026, 12, 2, 17, 0, tzinfo=UTC)) == "Wed 2 Dec, 17:00"


def test_format_when_shows_british_summer_time() -> None:
    assert format_when(datetime(2026, 6, 3, 16, 0, tzinfo=UTC)) == "Wed 3 Jun, 17:00"


def test_format_when_adds_the_year_only_when_it_differs_from_now() -> None:
    now = datetime(2026, 12, 21, 10, 0, tzinfo=UTC)
    assert format_when(datetime(2027, 12, 1, 17, 0, tzinfo=UTC), now=now) == "Wed 1 Dec 2027, 17:00"
    assert format_when(datetime(2026, 12, 2, 17, 0, tzinfo=UTC), now=now) == "Wed 2 Dec, 17:00"


def test_format_when_compares_years_in_local_time() -> None:
    # 23:30Z on 31 Dec 2026 is still 2026 in London but already 2027 in Auckland.
    at = datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
    now = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert format_when(at, "Europe/London", now=now) == "Fri 1 Jan 2027, 10:00"
    assert format_when(at, ZoneInfo("Pacific/Auckland"), now=now) == "Fri 1 Jan, 23:00"


def test_format_day_reads_day_date_month_and_year() -> None:
    assert format_day(date(2026, 12, 2)) == "Wed 2 Dec 2026"
    assert format_day(date(2027, 1, 10)) == "Sun 10 Jan 2027"


# --- bad input ------------------------------------------------------------------------------


def test_an_unknown_nation_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"nation must be one of ENG, WLS, SCT, NIR, not 'XX'"):
        WorkingCalendar("XX")


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown time zone 'Mars/Olympus'"):
        WorkingCalendar("ENG", tz="Mars/Olympus")


def test_working_hours_that_end_before_they_start_are_refused() -> None:
    with pytest.raises(ValueError, match=r"start before it ends"):
        WorkingCalendar("ENG", start=time(17), end=time(9))
    with pytest.raises(ValueError, match=r"start before it ends"):
        WorkingCalendar("ENG", start=time(9), end=time(9))


def test_a_naive_datetime_is_refused(eng: WorkingCalendar) -> None:
    naive = datetime(2026, 11, 4, 10, 0)
    for call in (
        lambda: eng.add_working_days(naive, 1),
        lambda: eng.same_working_day(naive),
        lambda: eng.in_working_hours(naive),
        lambda: eng.next_working_moment(naive),
        lambda: eng.local(naive),
        lambda: format_when(naive),
    ):
        with pytest.raises(ValueError, match=r"time-zone-aware"):
            call()


@pytest.mark.parametrize("n", [0, -1])
def test_zero_or_negative_working_days_are_refused(eng: WorkingCalendar, n: int) -> None:
    with pytest.raises(ValueError, match=r"at least 1 day"):
        eng.add_working_days(london(2026, 11, 4, 10, 0), n)


def test_the_calendar_exposes_its_settings_read_only(eng: WorkingCalendar) -> None:
    assert (eng.nation, eng.start, eng.end) == ("ENG", time(9), time(17))
    assert eng.tz == LONDON
    with pytest.raises(AttributeError):
        eng.nation = "SCT"  # type: ignore[misc]
