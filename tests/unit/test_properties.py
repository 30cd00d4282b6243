"""Properties, with hypothesis: whatever people type, whatever shape a YAML file takes, whatever
the date, the flows, the loaders and the calendar answer with a clear error or a right result.

Examples are bounded (`deadline=None`, modest `max_examples`) so the suite stays quick.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import Partnership, load_partnership
from bot.directory import Directory, parse_directory
from bot.disputes import DisputeError, open_dispute
from bot.flows.actions import action_flows
from bot.flows.engine import Flow, FlowContext, FlowRunner, Question, parse_date
from bot.flows.intake import details_from, intake_flow
from bot.policy import PRESETS, Policy, parse_policy
from bot.workdays import NATIONS, WorkingCalendar
from bot.yamlsource import ConfigError, load_yaml_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICIES = Path(__file__).resolve().parents[2] / "bot" / "policies"
BOUNDED = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
# Each mutated file is dumped and parsed whole (~70 ms): fewer examples keep these quick.
MUTATIONS = settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
CONTROL = "".join(chr(c) for c in range(32)) + "\x7f"


@cache
def partnership() -> Partnership:
    return load_partnership(EXAMPLES / "partnership.yaml")


@cache
def flows() -> dict[str, Flow]:
    out = {"intake": intake_flow()}
    out.update({f.flow.name: f.flow for f in action_flows().values()})
    return out


# --- what people type -------------------------------------------------------------------------

SPECIAL = [
    "",
    " ",
    "skip",
    "n/a",
    "yes",
    "No",
    "1",
    "0",
    "-1",
    "99",
    "today",
    "yesterday",
    "29/02/2023",
    "31/04/2026",
    "2026-13-01",
    "\u200f\u200e",  # right-to-left and left-to-right marks
    "\u202eCS-204611",  # a right-to-left override before a case reference
    "مرحبا بالعالم",
    "👩‍⚕️🚑🙂" * 20,
    "\x00\x1b[31mred\x1b[0m",
    "<!channel> <@U123> <https://evil.example|click>",
    "Rwt",
    "royal",
    "ben",
    "٣/١١/٢٠٢٦",  # Arabic-Indic digits
]


def repeated(piece: str, size: int) -> str:
    return (piece * (size // max(len(piece), 1) + 1))[:size]


texts = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet=st.sampled_from(CONTROL + "\u200f\u202e\u2066 a1/-"), max_size=40),
    # Up to 100 kB: a paste of a whole case file.
    st.builds(
        repeated,
        st.sampled_from(["a", "é", "🙂", "\u202e", "x\n", "1"]),
        st.integers(1, 100_000),
    ),
)
answers = st.one_of(st.none(), texts)
nows = st.datetimes(
    min_value=datetime(1995, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
)
people = st.sampled_from([None, "amara.okafor", "ben.carter", "helen.marsh", "irene.falk"])


def context(now: datetime, person_id: str | None) -> FlowContext:
    p = partnership()
    person = p.directory.get(person_id) if person_id else None
    return FlowContext(p.directory, p.policy, p.calendar, now, person, display_name="Sam")


def check_value(q: Question, value: Any, before: dict[str, Any], ctx: FlowContext) -> None:
    """An accepted answer is a right value for its question."""
    if value is None:
        assert not q.required or q.default is not None
        return
    if q.kind in ("yes_no", "confirm"):
        assert isinstance(value, bool)
    elif q.kind in ("choice", "person"):
        assert value in {c.value for c in q.options(before, ctx)}
    elif q.kind == "date":
        assert isinstance(value, date) and not isinstance(value, datetime)
        # Within reach: no slip of the year sends a deadline or a timer centuries away.
        assert ctx.today - timedelta(days=366) <= value <= ctx.today + timedelta(days=732)
    else:
        assert isinstance(value, str)
        assert len(value) <= q.limit
        assert value == value.strip()
        assert not any(
            ch in CONTROL.replace("\n", "").replace("\t", "").replace("\r", "") for ch in value
        )
        if q.required:
            assert value


@BOUNDED
@given(data=st.data(), now=nows, person_id=people)
def test_any_answer_to_any_question_is_a_clear_error_or_a_right_value(
    data: st.DataObject, now: datetime, person_id: str | None
) -> None:
    flow = flows()[data.draw(st.sampled_from(sorted(flows())), label="flow")]
    if not flow.questions:
        return
    ctx = context(now, person_id)
    runner = FlowRunner(flow, ctx)
    # Answer some earlier questions first, so later ones are asked in context.
    for q in flow.questions[: data.draw(st.integers(0, len(flow.questions) - 1))]:
        if q.applies(runner.state.answers, ctx):
            runner.answer(q.id, data.draw(answers, label=q.id))
    q = data.draw(st.sampled_from(flow.questions), label="question")
    raw = data.draw(answers, label="answer")
    before = dict(runner.state.answers)
    step = runner.answer(q.id, raw)
    if step.accepted:
        assert step.error is None
        if q.applies(runner.state.answers, ctx):
            assert q.id in runner.state.answers
            check_value(q, runner.state.answers[q.id], before, ctx)
        else:
            assert q.id not in runner.state.answers  # asked out of turn: taken, then dropped
    else:
        assert step.error and len(step.error) <= 400, step.error
        assert runner.state.answers == before, "a refused answer changes nothing"


@BOUNDED
@given(data=st.data(), now=nows, person_id=people)
def test_a_whole_form_of_any_answers_gives_errors_by_question_or_a_usable_result(
    data: st.DataObject, now: datetime, person_id: str | None
) -> None:
    name = data.draw(st.sampled_from(sorted(flows())), label="flow")
    flow = flows()[name]
    ctx = context(now, person_id)
    ids = [q.id for q in flow.questions]
    # Mostly sensible answers with some of anything: sensible ones reach the deep checks.
    raw = {
        q.id: data.draw(st.one_of(st.sampled_from(sensible(q, ctx)), answers), label=q.id)
        for q in flow.questions
    }
    runner = FlowRunner(flow, ctx)
    errors, _ = runner.answer_all(raw)
    assert set(errors) <= set(ids)
    assert all(e and len(e) <= 400 for e in errors.values())
    if errors or runner.state.stopped:
        return
    if name == "intake":
        if not runner.state.answers.get("confirm"):
            return
        if ctx.person is None:
            return  # the person is remembered first, through the service (tests/integration)
        details = details_from(runner.state.answers, ctx, ctx.person.id)
        try:
            dispute = open_dispute(
                ref="WST-2026-0001",
                partnership_id="wst-example",
                policy=ctx.policy,
                details=details,
                directory=ctx.directory,
                calendar=ctx.calendar,
                now=now,
            )
        except DisputeError as exc:
            assert str(exc)
            return
        assert dispute.next_due is not None and dispute.next_due.due_at > dispute.opened_at
    else:
        (action,) = [a for a in action_flows().values() if a.flow.name == name]
        assert isinstance(action.command(runner.state.answers, ctx), dict)


def sensible(q: Question, ctx: FlowContext) -> list[str]:
    """Answers a careful person would give, so whole forms often get through."""
    if q.kind in ("yes_no", "confirm"):
        return ["yes", "no"]
    if q.kind == "choice":
        return [c.value for c in q.options({}, ctx)][:5] or ["1"]
    if q.kind == "person":
        return ["ben.carter", "skip", "tom.hadley"]
    if q.kind == "date":
        return ["today", "yesterday", ctx.today.isoformat(), "01/01/1995", "2099-01-01"]
    return ["CS-204611", "The referral was closed with no further action."]


def spelled(d: date) -> list[str]:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return [
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}",
        f"{d.day:02d}/{d.month:02d}/{d.year:04d}",
        f"{d.day}.{d.month}.{d.year:04d}",
        f"{d.day} {months[d.month - 1]} {d.year:04d}",
        f"{d.day}th {months[d.month - 1]}uary {d.year:04d}",
    ]


@BOUNDED
@given(day=st.dates(), today=st.dates(min_value=date(1995, 1, 1), max_value=date(2090, 1, 1)))
def test_any_date_written_the_uk_ways_reads_back_as_itself(day: date, today: date) -> None:
    for written in spelled(day):
        assert parse_date(written, today) == day, written
        assert parse_date(written.upper(), today) == day, written


@BOUNDED
@given(day=st.dates(), now=nows, person_id=people)
def test_any_disagreement_date_is_taken_when_not_in_the_future(
    day: date, now: datetime, person_id: str | None
) -> None:
    ctx = context(now, person_id)
    runner = FlowRunner(intake_flow(), ctx)
    step = runner.answer("disagreement_date", f"{day.day:02d}/{day.month:02d}/{day.year:04d}")
    if day > ctx.today:
        assert not step.accepted and "future" in (step.error or "")
    elif day < ctx.today - timedelta(days=366):
        assert not step.accepted and "check the year" in (step.error or "")
    else:
        assert step.accepted and runner.state.answers["disagreement_date"] == day


# --- any YAML shape ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.dates(),
    st.sampled_from(
        [
            "17:00",
            "25:99",
            "2 working days",
            "0 working days",
            "999999999 working days",
            "100000000 hours",
            "immediately",
            "Mars/Olympus_Mons",
            "Europe/London",
            "../../etc/passwd",
            "ENG",
            "WLS",
            "practitioner",
            "line_manager",
            "tom.hadley",
            "amara.okafor",
            "after_resolution",
            "exceptional",
        ]
    ),
)
shapes = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=12), children, max_size=4),
    ),
    max_leaves=25,
)


@cache
def example_data(kind: str) -> Any:
    path = POLICIES / "wolverhampton.yaml" if kind == "policy" else EXAMPLES / "directory.yaml"
    return load_yaml_text(path.read_text(encoding="utf-8"), str(path)).data


def mutate(data: st.DataObject, tree: Any) -> Any:
    """A copy of `tree` with one subtree replaced by any shape (or a key dropped)."""
    tree = copy.deepcopy(tree)
    parent: Any = None
    key: Any = None
    node = tree
    while isinstance(node, dict | list) and node and data.draw(st.integers(0, 3), label="go") > 0:
        parent = node
        key = data.draw(
            st.sampled_from(sorted(node, key=str))
            if isinstance(node, dict)
            else st.integers(0, len(node) - 1),
            label="key",
        )
        node = node[key]
    if parent is None:
        return data.draw(shapes, label="root")
    if isinstance(parent, dict) and data.draw(st.booleans(), label="drop"):
        del parent[key]
    else:
        parent[key] = data.draw(shapes, label="value")
    return tree


def dumped(tree: Any) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(tree, Dumper=dumper, allow_unicode=True, sort_keys=False)


def assert_located(exc: ConfigError) -> None:
    assert exc.problems, "a ConfigError names at least one problem"
    for problem in exc.problems:
        assert problem.file and problem.message
        assert "Traceback" not in str(problem)


def check_policy(policy: Policy) -> None:
    """A policy that loads can be used: its calendar and every step's deadline."""
    calendar = policy.calendar([])
    anchor = datetime(2026, 11, 26, 10, tzinfo=UTC)
    for stage in policy.stages:
        for step in stage.steps:
            due = policy.effective_due(step, anchor, calendar)
            assert due >= anchor


def check_directory(directory: Directory) -> None:
    """A directory that loads can be walked: chains end, every role holder is found."""
    for person in directory:
        chain = directory.chain(person.id)
        assert person not in chain and len(chain) < len(directory.people)
        for agency in directory.agencies:
            directory.role_holders(agency, "line_manager", for_person=person.id)


@BOUNDED
@given(tree=shapes)
def test_a_policy_of_any_yaml_shape_loads_or_is_refused_with_located_problems(tree: Any) -> None:
    try:
        policy = parse_policy(load_yaml_text(dumped(tree), "policy.yaml"))
    except ConfigError as exc:
        assert_located(exc)
    else:
        check_policy(policy)


@MUTATIONS
@given(data=st.data())
def test_a_policy_with_any_part_changed_loads_and_works_or_is_refused_clearly(
    data: st.DataObject,
) -> None:
    tree = mutate(data, example_data("policy"))
    try:
        policy = parse_policy(load_yaml_text(dumped(tree), "policy.yaml"))
    except ConfigError as exc:
        assert_located(exc)
    else:
        check_policy(policy)


@BOUNDED
@given(tree=shapes)
def test_a_directory_of_any_yaml_shape_loads_or_is_refused_with_located_problems(
    tree: Any,
) -> None:
    try:
        directory = parse_directory(load_yaml_text(dumped(tree), "directory.yaml"))
    except ConfigError as exc:
        assert_located(exc)
    else:
        check_directory(directory)


@MUTATIONS
@given(data=st.data())
def test_a_directory_with_any_part_changed_loads_and_works_or_is_refused_clearly(
    data: st.DataObject,
) -> None:
    tree = mutate(data, example_data("directory"))
    try:
        directory = parse_directory(load_yaml_text(dumped(tree), "directory.yaml"))
    except ConfigError as exc:
        assert_located(exc)
    else:
        check_directory(directory)


@settings(deadline=None, max_examples=60)
@given(text=st.text(max_size=200))
def test_any_text_at_all_as_yaml_is_data_or_a_located_config_error(text: str) -> None:
    try:
        load_yaml_text(text, "any.yaml")
    except ConfigError as exc:
        assert_located(exc)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("!0", "could not determine a constructor for the tag '!0'"),  # found by the above
        ("a: !!python/object/apply:os.system [ls]", "is not allowed here"),
        ("a: !custom {b: 1}", "is not allowed here"),
        ("when: 2026-13-45", "month must be in 1..12"),
        ("n: !!int abc", "invalid literal"),
        ("blob: !!binary zz", "base64"),
    ],
)
def test_a_value_yaml_can_parse_but_not_build_is_a_located_config_error(
    text: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(text, "any.yaml")
    assert_located(caught.value)
    (problem,) = caught.value.problems
    assert problem.line == 1 and says in problem.message


def test_every_preset_still_loads_and_works() -> None:
    for name in PRESETS:
        text = (POLICIES / f"{name}.yaml").read_text(encoding="utf-8")
        check_policy(parse_policy(load_yaml_text(text, name)))


# --- the calendar ------------------------------------------------------------------------------


@cache
def calendar(nation: str) -> WorkingCalendar:
    return WorkingCalendar(nation)


anchors = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2075, 12, 31), timezones=st.just(UTC)
)
nations = st.sampled_from(NATIONS)
counts = st.integers(min_value=1, max_value=60)


@BOUNDED
@given(nation=nations, anchor=anchors, n=counts)
def test_a_working_day_deadline_is_always_a_working_days_close(
    nation: str, anchor: datetime, n: int
) -> None:
    cal = calendar(nation)
    due = cal.add_working_days(anchor, n)
    local = cal.local(due)
    assert local.time() == time(17, 0)
    assert cal.is_working_day(local.date())
    assert local.date() > cal.local(anchor).date(), "the anchor's own day never counts"
    assert cal.working_days_between(anchor, due) == n
    # Exactly n working days, none skipped: the days counted are the calendar's working days.
    counted = cal.working_days_in(cal.local(anchor).date() + timedelta(days=1), local.date())
    assert len(counted) == n and all(cal.is_working_day(d) for d in counted)


@BOUNDED
@given(nation=nations, anchor=anchors, n=counts, m=counts)
def test_adding_n_then_m_working_days_is_adding_n_plus_m(
    nation: str, anchor: datetime, n: int, m: int
) -> None:
    cal = calendar(nation)
    assert cal.add_working_days(cal.add_working_days(anchor, n), m) == cal.add_working_days(
        anchor, n + m
    )


@BOUNDED
@given(nation=nations, at=anchors)
def test_the_next_working_moment_is_in_working_hours_and_nothing_earlier_is(
    nation: str, at: datetime
) -> None:
    cal = calendar(nation)
    moment = cal.next_working_moment(at)
    assert moment >= at
    assert cal.in_working_hours(moment)
    if cal.in_working_hours(at):
        assert moment == at
    else:
        assert moment == cal.opening_of(cal.local(moment).date())
        # No working minute between `at` and the moment found.
        day = cal.local(at).date()
        while day < cal.local(moment).date():
            if cal.is_working_day(day):
                assert at >= cal.close_of(day)
            day += timedelta(days=1)


@BOUNDED
@given(nation=nations, start=anchors, end=anchors)
def test_working_days_between_agrees_with_adding_working_days(
    nation: str, start: datetime, end: datetime
) -> None:
    cal = calendar(nation)
    between = cal.working_days_between(start, end)
    end_day = cal.local(end).date()
    if end_day <= cal.local(start).date():
        assert between == 0
        return
    assert between >= 0
    if between:
        assert cal.local(cal.add_working_days(start, between)).date() <= end_day
    assert cal.local(cal.add_working_days(start, between + 1)).date() > end_day


@BOUNDED
@given(nation=nations, anchor=anchors)
def test_same_working_day_is_a_working_days_close_not_before_the_anchor(
    nation: str, anchor: datetime
) -> None:
    cal = calendar(nation)
    due = cal.same_working_day(anchor)
    assert due > anchor
    assert cal.local(due).time() == time(17, 0) and cal.is_working_day(cal.local(due).date())
    assert due <= cal.add_working_days(anchor, 1)
