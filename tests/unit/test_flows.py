"""The flows on a simulated clock: the engine's question kinds, the /escalate intake's branches,
the action flows and the text commands, each checked for a clear answer and for what it changed.

The engine tests need only the example partnership; the rest use the `core` fixture (SQLite) so
that "nothing created" is checked in the store itself.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.adapters.slack.blocks import fallback_text, message_blocks
from bot.app import Core, build_core
from bot.clock import FakeClock
from bot.config import Partnership, Settings, load_partnership
from bot.conversation import Conversations
from bot.disputes import Status
from bot.flows.actions import action_flows
from bot.flows.engine import (
    LONG_TEXT_LIMIT,
    Choice,
    Flow,
    FlowContext,
    FlowRunner,
    FlowState,
    Question,
    parse_answer,
    parse_date,
)
from bot.flows.intake import intake_flow
from bot.messages import ActionId, Message, plain
from bot.service import Outcome
from store.models import OutboxRow

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "partnership.yaml"
TODAY = date(2026, 11, 26)  # the `clock` fixture's day: a Thursday
# A London date and time as the bot writes it: "Tue 1 Dec, 17:00".
PLAIN_WHEN = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec), \d{2}:\d{2}"
MARKUP = "<@U123> *bold* <!channel> <https://evil.example|click>"


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def partnership() -> Partnership:
    return load_partnership(EXAMPLE_CONFIG)


def make_ctx(partnership: Partnership, now: datetime, person_id: str | None) -> FlowContext:
    person = partnership.directory.get(person_id) if person_id else None
    return FlowContext(partnership.directory, partnership.policy, partnership.calendar, now, person)


@pytest.fixture
def ctx(partnership: Partnership, clock: FakeClock) -> FlowContext:
    """Amara Okafor's context at the simulated now."""
    return make_ctx(partnership, clock.now(), "amara.okafor")


def intake_q(question_id: str) -> Question:
    return intake_flow().question(question_id)


def outbox(core: Core) -> list[Message]:
    """Every message waiting to be sent, oldest first."""
    with core.store.unit() as session:
        query = select(OutboxRow).where(OutboxRow.status == "pending").order_by(OutboxRow.id)
        rows = session.execute(query).scalars()
        return [Message.from_data(row.payload) for row in rows]


def to(core: Core, person_id: str) -> list[Message]:
    return [m for m in outbox(core) if m.recipient.kind == "person" and m.recipient.id == person_id]


def dispute_count(core: Core) -> int:
    with core.store.unit() as session:
        return core.store.count_disputes(session)


def event_types(core: Core, ref: str) -> list[str]:
    with core.store.unit() as session:
        return [e.type for e in core.store.events(session, ref)]


def events(core: Core, ref: str, type_: str) -> list[dict[str, Any]]:
    with core.store.unit() as session:
        return [
            {"actor": e.actor, **e.data} for e in core.store.events(session, ref) if e.type == type_
        ]


GOOD_INTAKE = {
    "immediate_risk": "no",
    "scope": "1",
    "other_agency": "Royal Wolverhampton NHS Trust",
    "other_person": "Ben Carter",
    "category": "Threshold for action",
    "case_ref": "CS-204611",
    "decision": "Children's social care closed the case without a home visit.",
    "reasons": "The health visitor saw bruising on 20 November and the case was closed regardless.",
    "outcome_sought": "Reopen the case and hold a strategy discussion.",
    "disagreement_date": "yesterday",
    "own_name": "Zed Okoro",
    "own_agency": "Black Country Healthcare NHS Foundation Trust",
    "own_manager": "Gareth Pugh",
    "confirm": "yes",
}


def drive(
    core: Core,
    runner: FlowRunner,
    answers: dict[str, Any],
    *,
    user_key: str,
    until: str | None = None,
) -> list[str]:
    """Answer every pending question from `answers` (acting on notices); return the notices.

    Stops before `until` when given; fails loudly on any rejected answer.
    """
    said: list[str] = []
    while (q := runner.pending()) is not None and q.id != until:
        step = runner.answer(q.id, answers[q.id])
        assert step.accepted, (q.id, step.error)
        core.conversations.on_notices(user_key, runner, step.notices)
        core.conversations.save(user_key, runner)
        said += [n.text for n in step.notices]
    return said


def log_dispute(core: Core, person_id: str = "amara.okafor", **overrides: Any) -> Outcome:
    """A whole intake, confirmed, as `person_id`."""
    person = core.service.directory.get(person_id)
    key = f"test:{person_id}"
    runner = core.conversations.resume(key, person)
    drive(core, runner, {**GOOD_INTAKE, **overrides}, user_key=key)
    assert runner.complete
    outcome = core.conversations.finish_intake(key, runner)
    assert outcome.ok, outcome.text
    return outcome


def act(core: Core, ref: str, person_id: str, button: ActionId, **answers: Any) -> Outcome:
    """Answer a button's flow question by question, then carry out its action."""
    person = core.service.directory.get(person_id)
    assert person is not None
    flow = core.conversations.action_flow(button)
    runner = FlowRunner(flow.flow, core.conversations.context(person))
    while (q := runner.pending()) is not None:
        step = runner.answer(q.id, answers[q.id])
        assert step.accepted, (q.id, step.error)
    return core.conversations.run_action(ref, person, button, runner.state.answers)


def restarted(database_url: str, clock: FakeClock) -> Core:
    """A second core on the same database, as after a restart (the caller disposes of it)."""
    settings = Settings(database_url=database_url, escalation_config=str(EXAMPLE_CONFIG))
    return build_core(settings, clock=clock)


def load(core: Core, ref: str) -> Any:
    with core.store.unit() as session:
        return core.store.load(session, ref)


# --- the engine: each kind of question --------------------------------------------------------


def test_a_choice_is_taken_by_its_number(ctx: FlowContext) -> None:
    assert parse_answer(intake_q("other_agency"), "2", {}, ctx) == ("rwt", None)


def test_a_choice_is_taken_by_its_label_in_any_case(ctx: FlowContext) -> None:
    q = intake_q("other_agency")
    assert parse_answer(q, "royal wolverhampton nhs trust", {}, ctx) == ("rwt", None)
    assert parse_answer(q, "West Midlands Police", {}, ctx) == ("wmp", None)


def test_a_choice_is_taken_by_its_id_or_a_unique_part_of_its_label(ctx: FlowContext) -> None:
    q = intake_q("other_agency")
    assert parse_answer(q, "wmp", {}, ctx) == ("wmp", None)
    assert parse_answer(q, "Probation", {}, ctx) == ("probation", None)


def test_an_ambiguous_part_of_a_label_is_refused_rather_than_guessed(ctx: FlowContext) -> None:
    value, error = parse_answer(intake_q("other_agency"), "NHS", {}, ctx)
    assert value is None
    assert error == "'NHS' is not one of the options offered; reply with its number or its name."


def test_a_choice_number_out_of_range_is_refused(ctx: FlowContext) -> None:
    value, error = parse_answer(intake_q("other_agency"), "99", {}, ctx)
    assert value is None
    assert error is not None and "'99' is not one of the options offered" in error


def test_the_other_agency_offered_never_includes_the_persons_own(ctx: FlowContext) -> None:
    offered = [c.value for c in intake_q("other_agency").options({}, ctx)]
    assert "cwc-childrens" not in offered
    assert "rwt" in offered
    value, error = parse_answer(intake_q("other_agency"), "cwc-childrens", {}, ctx)
    assert value is None and error is not None


def test_short_text_longer_than_its_limit_is_refused_naming_the_limit(ctx: FlowContext) -> None:
    q = intake_q("case_ref")
    assert parse_answer(q, "CS-" + "9" * 37, {}, ctx) == ("CS-" + "9" * 37, None)
    value, error = parse_answer(q, "CS-" + "9" * 38, {}, ctx)
    assert value is None
    assert error is not None and "That is 41 characters; please keep it under 40" in error


def test_long_text_up_to_its_limit_is_taken_and_one_more_character_is_not(
    ctx: FlowContext,
) -> None:
    q = intake_q("reasons")
    assert q.limit == LONG_TEXT_LIMIT == 3000
    assert parse_answer(q, "x" * 3000, {}, ctx) == ("x" * 3000, None)
    value, error = parse_answer(q, "x" * 3001, {}, ctx)
    assert value is None
    assert error is not None and "That is 3,001 characters; please keep it under 3,000" in error


def test_a_required_answer_left_blank_is_asked_for_again_by_its_question(
    ctx: FlowContext,
) -> None:
    q = intake_q("decision")
    assert parse_answer(q, "   ", {}, ctx) == (
        None,
        "Please answer: What was decided (or not done) that you disagree with?",
    )


@pytest.mark.parametrize("word", ["skip", "n/a", "none", "-", "Unknown"])
def test_a_required_question_cannot_be_skipped_with_a_skip_word(
    ctx: FlowContext, word: str
) -> None:
    # Once a bug: "skip" was stored as the disputed decision itself.
    value, error = parse_answer(intake_q("case_ref"), word, {}, ctx)
    assert value is None
    assert error == "Please answer: What is the case reference in your agency's system?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", TODAY),
        ("Today", TODAY),
        ("yesterday", date(2026, 11, 25)),
        ("24/11/2026", date(2026, 11, 24)),
        ("1/2/2026", date(2026, 2, 1)),  # day first, the British way
        ("24/11/26", date(2026, 11, 24)),
        ("24.11.2026", date(2026, 11, 24)),
        ("24/11", date(2026, 11, 24)),
        ("2026-11-24", date(2026, 11, 24)),
        ("24 Nov", date(2026, 11, 24)),
        ("24th November 2026", date(2026, 11, 24)),
        ("Tue 24 Nov 2026", date(2026, 11, 24)),
    ],
)
def test_dates_are_read_as_people_write_them_in_the_uk(text: str, expected: date) -> None:
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(
    "text",
    [
        "banana",
        "last week",
        "tomorrow-ish",
        "31/02/2026",
        "32/01/2026",
        "11/24/2026",  # American order: there is no 24th month
        "2026-13-01",
        "24 Smarch 2026",
        "",
    ],
)
def test_nonsense_and_impossible_dates_are_not_read(text: str) -> None:
    assert parse_date(text, TODAY) is None


def test_a_date_that_is_not_understood_gets_an_example_of_what_is(ctx: FlowContext) -> None:
    value, error = parse_answer(intake_q("disagreement_date"), "the other day", {}, ctx)
    assert value is None
    assert error == (
        "'the other day' is not a date I understand; write it like 24/11/2026, 2026-11-24, "
        "today or yesterday."
    )


def test_a_bad_answer_echoed_in_an_error_is_clipped(ctx: FlowContext) -> None:
    _, error = parse_answer(intake_q("disagreement_date"), "z" * 500, {}, ctx)
    assert error is not None and "z" * 39 + "…'" in error and "z" * 41 not in error


def test_a_person_is_chosen_from_the_directory_within_the_agency_named(
    ctx: FlowContext,
) -> None:
    q = intake_q("other_person")
    answers = {"other_agency": "rwt"}
    labels = [c.label for c in q.options(answers, ctx)]
    assert labels[0] == "Ben Carter, Health Visitor"
    assert "Amara Okafor, Social Worker" not in labels  # another agency
    assert parse_answer(q, "1", answers, ctx) == ("ben.carter", None)
    assert parse_answer(q, "Rosa Delgado", answers, ctx) == ("rosa.delgado", None)
    assert parse_answer(q, "imran.shah", answers, ctx) == ("imran.shah", None)


def test_a_person_outside_the_agency_named_is_refused(ctx: FlowContext) -> None:
    value, error = parse_answer(
        intake_q("other_person"), "Amara Okafor", {"other_agency": "rwt"}, ctx
    )
    assert value is None
    assert error == (
        "'Amara Okafor' is not one of the persons offered; reply with its number or its name."
    )


@pytest.mark.parametrize("word", ["skip", "", "don't know", "Not known"])
def test_an_optional_question_can_be_skipped(ctx: FlowContext, word: str) -> None:
    assert parse_answer(intake_q("other_person"), word, {"other_agency": "rwt"}, ctx) == (
        None,
        None,
    )


@pytest.mark.parametrize(
    ("text", "expected"), [("yes", True), ("Y", True), ("Yes ", True), ("no", False), ("n", False)]
)
def test_yes_no_questions_take_yes_and_no(ctx: FlowContext, text: str, expected: bool) -> None:
    assert parse_answer(intake_q("immediate_risk"), text, {}, ctx) == (expected, None)


@pytest.mark.parametrize("text", ["maybe", "probably not", "yes please"])
def test_yes_no_questions_refuse_anything_else(ctx: FlowContext, text: str) -> None:
    assert parse_answer(intake_q("immediate_risk"), text, {}, ctx) == (
        None,
        "Please answer yes or no.",
    )


@pytest.mark.parametrize("text", ["", "skip", "whatever"])
def test_the_confirm_question_needs_an_explicit_yes_or_no(ctx: FlowContext, text: str) -> None:
    assert parse_answer(intake_q("confirm"), text, {}, ctx) == (None, "Please answer yes or no.")


def test_a_blank_date_takes_its_default_of_today(ctx: FlowContext) -> None:
    assert parse_answer(intake_q("disagreement_date"), "", {}, ctx) == (TODAY, None)


def test_a_future_disagreement_date_is_refused(ctx: FlowContext) -> None:
    assert parse_answer(intake_q("disagreement_date"), "27/11/2026", {}, ctx) == (
        None,
        "The date of the disagreement cannot be in the future.",
    )


def test_a_name_instead_of_a_case_reference_is_refused(ctx: FlowContext) -> None:
    value, error = parse_answer(intake_q("case_ref"), "Jane Mary Anne Smith", {}, ctx)
    assert value is None
    assert error is not None and "never the child's or adult's name" in error


def test_control_and_escape_characters_are_removed_from_answers(ctx: FlowContext) -> None:
    value, error = parse_answer(intake_q("decision"), "bold\x1b[2J\x00 move\x07d", {}, ctx)
    assert error is None
    assert value == "bold[2J moved"


def test_plain_removes_control_characters_and_normalises_unicode_but_keeps_markup_literal() -> None:
    assert plain("cafe\u0301") == "café"
    assert plain("a\x1b[31mred\x1b[0m\x7f") == "a[31mred[0m"
    # Markup is not interpreted here: it stays literal text for each adapter to escape.
    assert plain(MARKUP) == MARKUP
    assert plain("line one\nline two\ttab") == "line one\nline two\ttab"


def test_plain_removes_bidi_overrides_and_invisible_characters_but_keeps_what_scripts_need() -> (
    None
):
    # "CS-204611" that would display as "CS-116402": the override is removed, not rendered.
    assert plain("CS-\u202e116402\u202c") == "CS-116402"
    assert plain("\u2067Ben\u2069 \u202aCarter\u202c") == "Ben Carter"
    assert plain("Ben\u200b Car\u2060ter\ufeff") == "Ben Carter"
    # Right-to-left marks, the joiners of Persian script and emoji sequences are kept.
    for kept in ("\u200fسارا\u200e", "می\u200cخواهم", "👩\u200d⚕️"):
        assert plain(kept) == unicodedata.normalize("NFC", kept)


# --- the engine: branching, going back, saved progress ----------------------------------------


def _branching_flow() -> Flow:
    return Flow(
        "branching",
        "A flow that branches",
        [
            Question("pet", "Do you have a pet?", "yes_no"),
            Question(
                "kind",
                "What kind?",
                "choice",
                choices=lambda a, c: [Choice("cat", "Cat"), Choice("dog", "Dog")],
                when=lambda a, c: bool(a.get("pet")),
            ),
            Question("name", "Its name?", "short_text", when=lambda a, c: a.get("kind") == "dog"),
            Question("done", "Finished?", "confirm"),
        ],
    )


def test_a_question_is_asked_only_when_its_condition_holds(ctx: FlowContext) -> None:
    runner = FlowRunner(_branching_flow(), ctx)
    assert runner.answer("pet", "no").accepted
    pending = runner.pending()
    assert pending is not None and pending.id == "done"
    assert [q.id for q in runner.applicable()] == ["pet", "done"]


def test_a_branch_taken_asks_its_follow_up_questions(ctx: FlowContext) -> None:
    runner = FlowRunner(_branching_flow(), ctx)
    asked = []
    for answer in ["yes", "Dog", "Rex", "yes"]:
        q = runner.pending()
        assert q is not None
        asked.append(q.id)
        assert runner.answer(q.id, answer).accepted
    assert asked == ["pet", "kind", "name", "done"]
    assert runner.complete
    assert runner.state.answers == {"pet": True, "kind": "dog", "name": "Rex", "done": True}


def test_going_back_and_changing_an_answer_drops_answers_that_no_longer_apply(
    ctx: FlowContext,
) -> None:
    runner = FlowRunner(_branching_flow(), ctx)
    for q_id, answer in [("pet", "yes"), ("kind", "2"), ("name", "Rex")]:
        assert runner.answer(q_id, answer).accepted
    assert runner.answer("pet", "no").accepted  # back to the first question
    assert runner.state.answers == {"pet": False}
    pending = runner.pending()
    assert pending is not None and pending.id == "done"


def test_a_rejected_answer_changes_nothing_and_the_question_stays_pending(
    ctx: FlowContext,
) -> None:
    runner = FlowRunner(_branching_flow(), ctx)
    step = runner.answer("pet", "perhaps")
    assert not step.accepted and step.error == "Please answer yes or no."
    assert runner.state.answers == {}
    pending = runner.pending()
    assert pending is not None and pending.id == "pet"


def test_a_whole_form_at_once_reports_each_bad_answer_by_question(ctx: FlowContext) -> None:
    runner = FlowRunner(intake_flow(), ctx)
    errors, notices = runner.answer_all(
        {
            **GOOD_INTAKE,
            "other_agency": "Ministry of Magic",
            "reasons": "r" * 50_000,
            "disagreement_date": "31/02/2026",
        }
    )
    assert set(errors) == {"other_agency", "reasons", "disagreement_date"}
    assert "50,000 characters" in errors["reasons"]
    assert notices == []
    assert not runner.complete
    assert "reasons" not in runner.state.answers


def test_saved_progress_round_trips_through_json_data_with_its_dates(ctx: FlowContext) -> None:
    state = FlowState(
        "intake",
        {"disagreement_date": date(2026, 11, 25), "case_ref": "CS-1", "immediate_risk": False},
        {"risk_alerted": True},
    )
    again = FlowState.from_data(state.to_data())
    assert again == state


def test_progress_is_saved_in_the_store_and_a_new_conversations_carries_on(
    core: Core, sqlite_url: str, clock: FakeClock
) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("slack:U1", amara)
    drive(core, runner, GOOD_INTAKE, user_key="slack:U1", until="confirm")

    # The person is interrupted; later a new process picks the conversation up from the store.
    clock.advance(timedelta(hours=2))
    later = restarted(sqlite_url, clock)
    try:
        person = later.service.directory.get("amara.okafor")
        resumed = later.conversations.resume("slack:U1", person)
        pending = resumed.pending()
        assert pending is not None and pending.id == "confirm"
        assert resumed.state.answers["case_ref"] == "CS-204611"
        assert resumed.state.answers["other_person"] == "ben.carter"
        assert resumed.state.answers["disagreement_date"] == date(2026, 11, 25)
        drive(later, resumed, GOOD_INTAKE, user_key="slack:U1")
        outcome = later.conversations.finish_intake("slack:U1", resumed)
        assert outcome.ok
        assert outcome.dispute is not None
        assert outcome.dispute.details.case_ref == "CS-204611"
        # Finished: nothing left to resume.
        again = later.conversations.resume("slack:U1", person)
        assert again.state.answers == {}
    finally:
        later.store.dispose()


def test_progress_is_kept_per_person(core: Core) -> None:
    d = core.service.directory
    runner = core.conversations.resume("k:amara", d.get("amara.okafor"))
    drive(core, runner, GOOD_INTAKE, user_key="k:amara", until="category")
    other = core.conversations.resume("k:ben", d.get("ben.carter"))
    assert other.state.answers == {}


def test_starting_fresh_ignores_saved_progress_and_forget_drops_it(core: Core) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="category")
    assert core.conversations.resume("k", amara, fresh=True).state.answers == {}
    assert core.conversations.resume("k", amara).state.answers != {}
    core.conversations.forget("k", "intake")
    assert core.conversations.resume("k", amara).state.answers == {}


# --- intake: confirm ----------------------------------------------------------------------


def test_confirming_the_intake_logs_the_dispute_and_tells_the_other_practitioner(
    core: Core,
) -> None:
    outcome = log_dispute(core)
    assert outcome.text == "Logged as WST-2026-0001. Next deadline: Tue 1 Dec, 17:00."
    assert dispute_count(core) == 1
    (to_ben,) = to(core, "ben.carter")
    assert to_ben.text.startswith(
        "Amara Okafor (City of Wolverhampton Council - Children's Social Care) has raised a "
        "professional disagreement (WST-2026-0001) with your agency."
    )
    assert "by Tue 1 Dec, 17:00" in to_ben.text
    assert ("Case reference", "CS-204611") in to_ben.facts
    assert ("Date of disagreement", "Wed 25 Nov 2026") in to_ben.facts
    assert {b.label for b in to_ben.buttons} >= {"Acknowledge", "Escalate"}


def test_the_raiser_gets_the_reference_and_every_deadline_as_a_plain_date(core: Core) -> None:
    log_dispute(core)
    (to_amara,) = to(core, "amara.okafor")
    assert to_amara.text.startswith(
        "Logged as WST-2026-0001. Ben Carter has been told and asked to acknowledge."
    )
    facts = dict(to_amara.facts)
    assert (
        facts[
            "Stage 1: Read the case file, speak to the disputing practitioner and seek a "
            "mutually agreeable way forward"
        ]
        == "Tue 1 Dec, 17:00"
    )
    assert (
        facts[
            "Stage 2: Line managers or named safeguarding leads attempt to resolve the differences"
        ]
        == "Thu 3 Dec, 17:00"
    )
    for label, when in to_amara.facts:
        assert re.fullmatch(rf"(done )?{PLAIN_WHEN}( \(local target\))?", when), (label, when)


def test_the_disputes_channel_gets_no_details_of_the_case(core: Core) -> None:
    log_dispute(core, decision=f"Secret decision {MARKUP}")
    channel = [m for m in outbox(core) if m.recipient.kind == "channel"]
    assert channel
    for message in channel:
        shown = message.text + " ".join(f"{k} {v}" for k, v in message.facts)
        assert "CS-204611" not in shown
        assert "Secret decision" not in shown


def test_saying_no_at_confirm_logs_nothing(core: Core) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    said = drive(core, runner, {**GOOD_INTAKE, "confirm": "no"}, user_key="k")
    assert said == ["Nothing has been logged. Type escalate to start again."]
    assert runner.state.stopped
    assert not runner.complete
    assert dispute_count(core) == 0
    assert outbox(core) == []


def test_markup_typed_by_a_user_is_echoed_literally_and_control_characters_are_removed(
    core: Core,
) -> None:
    log_dispute(core, decision=f"{MARKUP}\x1b[5m", reasons="ping\x07 everyone")
    (to_ben,) = to(core, "ben.carter")
    facts = dict(to_ben.facts)
    # The neutral message keeps what was typed as literal text (no mention, no link, no
    # formatting is made of it here); control characters never reach any platform.
    assert facts["Decision disputed"] == f"{MARKUP}[5m"
    assert facts["Reasons"] == "ping everyone"
    for message in outbox(core):
        for text in [message.text, *(v for _, v in message.facts)]:
            assert "\x1b" not in text and "\x07" not in text


def test_markup_typed_by_a_user_cannot_ping_or_link_once_rendered_for_slack(core: Core) -> None:
    log_dispute(core, decision=MARKUP)
    (to_ben,) = to(core, "ben.carter")
    rendered = json.dumps([b.to_dict() for b in message_blocks(to_ben)]) + fallback_text(to_ben)
    assert "&lt;@U123&gt; *bold* &lt;!channel&gt; &lt;https://evil.example|click&gt;" in rendered
    for live in ["<@U123>", "<!channel>", "<https://"]:
        assert live not in rendered


# --- intake: immediate risk ---------------------------------------------------------------


def test_immediate_risk_names_the_safeguarding_lead_pings_them_and_logging_carries_on(
    core: Core,
) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    step = runner.answer("immediate_risk", "yes")
    assert step.accepted
    (notice,) = step.notices
    assert notice.urgent and not notice.stop
    assert "do not wait for this process" in notice.text
    assert "Call 999" in notice.text
    assert (
        "Your designated safeguarding lead: Olivia Brandt (Deputy Director of Children's Social "
        "Care). They have been told now." in notice.text
    )
    assert "on-call" not in notice.text  # Thursday 10:00 is in working hours

    core.conversations.on_notices("k", runner, step.notices)
    (ping,) = to(core, "olivia.brandt")
    assert ping.text.startswith(
        "URGENT: Amara Okafor (City of Wolverhampton Council - Children's Social Care) has just "
        "reported that a child or adult is at immediate risk"
    )
    assert to(core, "sam.whitlock") == []  # on call only out of hours
    pending = runner.pending()
    assert pending is not None and pending.id == "scope"
    assert dispute_count(core) == 0


def test_immediate_risk_pings_the_lead_once_even_when_resumed(core: Core) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, {**GOOD_INTAKE, "immediate_risk": "yes"}, user_key="k", until="category")
    resumed = core.conversations.resume("k", amara)
    step = resumed.answer("immediate_risk", "yes")  # answered again after going back
    core.conversations.on_notices("k", resumed, step.notices)
    assert len(to(core, "olivia.brandt")) == 1


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 11, 26, 20, 0, tzinfo=UTC),  # Thursday evening
        datetime(2026, 11, 28, 11, 0, tzinfo=UTC),  # Saturday morning
    ],
    ids=["evening", "saturday"],
)
def test_immediate_risk_out_of_hours_gives_the_on_call_route_and_pings_on_call(
    core: Core, clock: FakeClock, when: datetime
) -> None:
    clock.set(when)
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    step = runner.answer("immediate_risk", "yes")
    (notice,) = step.notices
    assert "Outside 09:00-17:00 Monday to Friday, use your agency's on-call manager." in notice.text
    assert "Out of hours, your agency's route is the council's Emergency Duty Team." in notice.text
    core.conversations.on_notices("k", runner, step.notices)
    assert len(to(core, "olivia.brandt")) == 1
    assert len(to(core, "sam.whitlock")) == 1
    pending = runner.pending()
    assert pending is not None and pending.id == "scope"


def test_a_dispute_logged_with_immediate_risk_is_flagged_urgent(core: Core) -> None:
    outcome = log_dispute(core, immediate_risk="yes")
    assert outcome.dispute is not None
    assert outcome.dispute.details.immediate_risk
    assert "urgent" in outcome.dispute.flags
    assert "ImmediateRiskFlagged" in event_types(core, outcome.dispute.ref)


def test_immediate_risk_from_someone_unknown_pings_the_lead_once_their_agency_is_known(
    core: Core,
) -> None:
    runner = core.conversations.resume("slack:UNEW", None, display_name="Zed Okoro")
    step = runner.answer("immediate_risk", "yes")
    (notice,) = step.notices
    assert "tell your agency's designated safeguarding lead now" in notice.text
    assert "They have been told" not in notice.text  # nobody can be yet
    core.conversations.on_notices("slack:UNEW", runner, step.notices)
    assert outbox(core) == []

    said = drive(
        core,
        runner,
        {**GOOD_INTAKE, "immediate_risk": "yes"},
        user_key="slack:UNEW",
        until="own_manager",
    )
    # Once a bug: nobody was told until the whole intake was confirmed.
    assert any(
        "Your designated safeguarding lead: Nadia Haddad (Associate Director of Safeguarding). "
        "They have been told now." in text
        for text in said
    )
    (ping,) = to(core, "nadia.haddad")
    assert ping.text.startswith(
        "URGENT: Zed Okoro (Black Country Healthcare NHS Foundation Trust) has just reported"
    )
    assert dispute_count(core) == 0


# --- intake: out of scope -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "procedure"),
    [
        ("A complaint about an individual's practice", "the agency's own complaints procedure"),
        ("3", "designated officer (LADO) under the allegations procedure"),
        ("Whistleblowing", "whistleblowing policy"),
        ("A disagreement inside one agency", "the agency's internal processes"),
    ],
)
def test_an_out_of_scope_answer_says_which_procedure_applies_and_stops(
    core: Core, answer: str, procedure: str
) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="scope")
    step = runner.answer("scope", answer)
    assert step.accepted
    (notice,) = step.notices
    assert notice.stop
    assert "this escalation protocol does not apply" in notice.text
    assert procedure in notice.text
    assert runner.state.stopped
    assert runner.pending() is None
    assert not runner.complete
    assert dispute_count(core) == 0
    assert outbox(core) == []


# --- intake: someone the directory does not know ------------------------------------------


def test_someone_unknown_is_asked_their_agency_and_manager_and_remembered(
    core: Core, sqlite_url: str, clock: FakeClock
) -> None:
    assert core.service.directory.get("zed.okoro") is None
    runner = core.conversations.resume("slack:UNEW", None, display_name="Zed Okoro")
    asked = []
    while (q := runner.pending()) is not None:
        asked.append(q.id)
        step = runner.answer(q.id, "" if q.id == "own_name" else GOOD_INTAKE[q.id])
        assert step.accepted, (q.id, step.error)
    assert asked[-4:] == ["own_name", "own_agency", "own_manager", "confirm"]
    assert runner.state.answers["own_name"] == "Zed Okoro"  # the platform's display name

    outcome = core.conversations.finish_intake(
        "slack:UNEW", runner, platform_ids={"slack_id": "UNEW"}
    )
    assert outcome.ok, outcome.text
    zed = core.service.directory.get("zed.okoro")
    assert zed is not None
    assert (zed.name, zed.agency, zed.manager) == ("Zed Okoro", "bchft", "gareth.pugh")
    assert core.service.identify(slack_id="UNEW") == zed
    assert outcome.dispute is not None and outcome.dispute.details.raised_by == "zed.okoro"

    # Next time (even in a new process) they are known: no questions about themselves.
    later = restarted(sqlite_url, clock)
    try:
        known = later.service.identify(slack_id="UNEW")
        assert known is not None and known.id == "zed.okoro"
        again = later.conversations.resume("slack:UNEW", known)
        assert {q.id for q in again.applicable()}.isdisjoint({"own_name", "own_agency"})
    finally:
        later.store.dispose()


def test_someone_unknown_cannot_name_the_other_agency_as_their_own(core: Core) -> None:
    runner = core.conversations.resume("k", None, display_name="Zed Okoro")
    drive(core, runner, {**GOOD_INTAKE, "own_agency": "rwt"}, user_key="k", until="own_agency")
    step = runner.answer("own_agency", "Royal Wolverhampton NHS Trust")
    assert not step.accepted
    assert step.error is not None and step.error.startswith(
        "Your agency must differ from the other agency"
    )
    pending = runner.pending()
    assert pending is not None and pending.id == "own_agency"


def test_someone_unknown_without_a_display_name_is_asked_their_name(core: Core) -> None:
    runner = core.conversations.resume("k", None)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="own_name")
    assert runner.answer("own_name", "").error == "Please answer: What is your name?"


def test_someone_unknown_gets_a_clear_answer_to_list_and_status(core: Core) -> None:
    for text in ["escalate list", "escalate status WST-2026-0001"]:
        reply = core.conversations.command(text, None)
        assert reply is not None and not reply.ok
        assert reply.text.startswith("You are not in the partnership directory yet.")


# --- intake: bad answers change nothing ----------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("27/11/2026", "The date of the disagreement cannot be in the future."),
        ("31/02/2026", "'31/02/2026' is not a date I understand"),
        ("next Tuesday", "'next Tuesday' is not a date I understand"),
    ],
)
def test_a_bad_date_is_refused_asked_again_and_creates_nothing(
    core: Core, answer: str, error: str
) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="disagreement_date")
    step = runner.answer("disagreement_date", answer)
    assert not step.accepted
    assert step.error is not None and step.error.startswith(error)
    pending = runner.pending()
    assert pending is not None and pending.id == "disagreement_date"
    assert "disagreement_date" not in runner.state.answers
    assert dispute_count(core) == 0
    assert outbox(core) == []


def test_fifty_kilobytes_of_reasons_are_refused_naming_the_limit(core: Core) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="reasons")
    step = runner.answer("reasons", "x" * 50_000)
    assert not step.accepted
    assert step.error == (
        "That is 50,000 characters; please keep it under 3,000 (a summary is enough: the "
        "details stay in your agency's records)."
    )
    pending = runner.pending()
    assert pending is not None and pending.id == "reasons"
    assert "reasons" not in runner.state.answers
    assert dispute_count(core) == 0


@pytest.mark.parametrize("answer", ["Ministry of Magic", "99", "0", "NHS"])
def test_an_agency_not_in_the_list_is_refused(core: Core, answer: str) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="other_agency")
    step = runner.answer("other_agency", answer)
    assert not step.accepted
    assert step.error == (
        f"'{answer}' is not one of the options offered; reply with its number or its name."
    )
    pending = runner.pending()
    assert pending is not None and pending.id == "other_agency"
    assert dispute_count(core) == 0


def test_the_summary_before_confirming_describes_each_answer_in_words(core: Core) -> None:
    amara = core.service.directory.get("amara.okafor")
    runner = core.conversations.resume("k", amara)
    drive(core, runner, GOOD_INTAKE, user_key="k", until="confirm")
    flow = runner.flow
    assert flow.summary is not None
    summary = dict(flow.summary(runner.state.answers, runner.ctx))
    assert summary["Which agency do you disagree with?"] == "Royal Wolverhampton NHS Trust"
    assert summary["Who is the practitioner there, if you know?"] == "Ben Carter, Health Visitor"
    assert summary["When did the disagreement arise (or the decision reach you)?"] == (
        "Wed 25 Nov 2026"
    )
    assert summary["Is a child or adult at immediate risk of significant harm?"] == "No"


# --- action flows -------------------------------------------------------------------------


@pytest.fixture
def opened(core: Core) -> Iterator[str]:
    """Amara Okafor has logged a dispute with Ben Carter, and its messages have gone out."""
    outcome = log_dispute(core)
    assert outcome.dispute is not None
    with core.store.unit() as session:
        for row in session.execute(select(OutboxRow)).scalars():
            row.status = "sent"  # as the dispatcher would after delivering them
    yield outcome.dispute.ref


def test_every_button_but_view_details_has_a_flow() -> None:
    buttons = set(action_flows())
    assert {
        ActionId.ACKNOWLEDGE,
        ActionId.ADD_NOTE,
        ActionId.ESCALATE,
        ActionId.PROPOSE_RESOLUTION,
        ActionId.CONFIRM_RESOLUTION,
        ActionId.REJECT_RESOLUTION,
        ActionId.RECORD_DELAY_REASON,
        ActionId.RECORD_LEARNING,
        ActionId.WITHDRAW,
    } <= buttons


def test_acknowledging_tells_the_raiser_and_records_it_once(core: Core, opened: str) -> None:
    outcome = act(core, opened, "ben.carter", ActionId.ACKNOWLEDGE)
    assert outcome.ok and outcome.changed
    assert outcome.text == f"Thank you: you acknowledged {opened} at Thu 26 Nov, 10:00."
    (told,) = to(core, "amara.okafor")
    assert told.text == (
        f"Ben Carter (Royal Wolverhampton NHS Trust) acknowledged {opened} at Thu 26 Nov, 10:00."
    )


def test_acknowledging_twice_gives_a_clear_answer_and_no_second_event(
    core: Core, opened: str, clock: FakeClock
) -> None:
    act(core, opened, "ben.carter", ActionId.ACKNOWLEDGE)
    sent = len(outbox(core))
    clock.advance(timedelta(hours=1))
    again = act(core, opened, "ben.carter", ActionId.ACKNOWLEDGE)
    assert again.ok and not again.changed
    assert again.text == (
        f"{opened} was already acknowledged for your agency by Ben Carter (Royal Wolverhampton "
        "NHS Trust) at Thu 26 Nov, 10:00."
    )
    assert event_types(core, opened).count("Acknowledged") == 1
    assert len(outbox(core)) == sent


def test_the_raiser_cannot_acknowledge_their_own_dispute(core: Core, opened: str) -> None:
    outcome = act(core, opened, "amara.okafor", ActionId.ACKNOWLEDGE)
    assert not outcome.ok
    assert outcome.text == (
        "Sorry, you can't do that: you raised this dispute, so there is nothing for you to "
        "acknowledge."
    )
    assert "Acknowledged" not in event_types(core, opened)


def test_adding_a_note_records_who_and_when_and_tells_the_other_party(
    core: Core, opened: str
) -> None:
    outcome = act(
        core,
        opened,
        "ben.carter",
        ActionId.ADD_NOTE,
        text="Spoke to Amara by phone; agreed to review the file.",
        with_whom="Amara Okafor",
        held_on="yesterday",
    )
    assert outcome.ok and outcome.text == f"Your note is on the record of {opened}."
    (note,) = events(core, opened, "NoteAdded")
    assert note["actor"] == "ben.carter"
    assert note["with_whom"] == "Amara Okafor"
    assert note["held_at"].startswith("2026-11-25T09:00")  # the opening of yesterday
    (told,) = to(core, "amara.okafor")
    assert ("Note", "Spoke to Amara by phone; agreed to review the file.") in told.facts


def test_a_note_cannot_be_dated_in_the_future(core: Core, ctx: FlowContext) -> None:
    flow = action_flows()[ActionId.ADD_NOTE].flow
    runner = FlowRunner(flow, ctx)
    assert runner.answer("text", "a note").accepted
    step = runner.answer("held_on", "27/11/2026")
    assert step.error == "A discussion cannot have happened in the future."


def test_escalating_with_a_reason_moves_to_stage_two_and_tells_both_line_managers(
    core: Core, opened: str
) -> None:
    outcome = act(
        core, opened, "ben.carter", ActionId.ESCALATE, reason="We cannot agree on threshold."
    )
    assert outcome.ok, outcome.text
    assert outcome.text == (
        f"{opened} is now at stage 2 (Line managers and safeguarding leads). Told: Tom Hadley, "
        "Rosa Delgado."
    )
    assert load(core, opened).stage == 2
    for manager, agency in [
        ("tom.hadley", "City of Wolverhampton Council - Children's Social Care"),
        ("rosa.delgado", "Royal Wolverhampton NHS Trust"),
    ]:
        (told,) = to(core, manager)
        assert told.text.startswith(
            f"{opened} has been escalated to stage 2 (Line managers and safeguarding leads) by "
            "Ben Carter (Royal Wolverhampton NHS Trust)."
        )
        assert f"As the {agency}'s line manager" in told.text
        assert ("Reason for escalation", "We cannot agree on threshold.") in told.facts
    (escalated,) = events(core, opened, "StageEscalated")
    assert (escalated["from_stage"], escalated["to_stage"]) == (1, 2)


def test_escalating_needs_a_reason(core: Core, ctx: FlowContext) -> None:
    runner = FlowRunner(action_flows()[ActionId.ESCALATE].flow, ctx)
    step = runner.answer("reason", "")
    assert step.error == "Please answer: Why does this need to go to the next stage?"
    step = runner.answer("reason", "r" * 50_000)
    assert step.error is not None and "50,000 characters" in step.error


def test_proposing_a_resolution_with_three_actions_asks_owner_and_review_date_for_each(
    core: Core, opened: str
) -> None:
    ben = core.service.directory.get("ben.carter")
    assert ben is not None
    flow = core.conversations.action_flow(ActionId.PROPOSE_RESOLUTION)
    runner = FlowRunner(flow.flow, core.conversations.context(ben))
    script = [
        ("outcome", "Case stays open; joint visit next week."),
        ("action_1", "Joint home visit"),
        ("owner_1", "Amara Okafor (City of Wolverhampton Council - Children's Social Care)"),
        ("review_1", "3/12/2026"),
        ("more_1", "yes"),
        ("action_2", "Share health visiting records"),
        ("owner_2", "ben.carter"),
        ("review_2", "today"),
        ("more_2", "yes"),
        ("action_3", "Strategy discussion"),
        ("owner_3", "tom.hadley"),
        ("review_3", "2026-12-10"),
    ]
    for expected_id, answer in script:
        q = runner.pending()
        assert q is not None and q.id == expected_id
        assert runner.answer(q.id, answer).accepted, q.id
    assert runner.complete  # no fourth action is offered

    outcome = core.conversations.run_action(
        opened, ben, ActionId.PROPOSE_RESOLUTION, runner.state.answers
    )
    assert outcome.ok, outcome.text
    resolution = load(core, opened).resolution
    assert [(a.description, a.owner, a.review_date) for a in resolution.actions] == [
        ("Joint home visit", "amara.okafor", date(2026, 12, 3)),
        ("Share health visiting records", "ben.carter", TODAY),
        ("Strategy discussion", "tom.hadley", date(2026, 12, 10)),
    ]
    (told,) = to(core, "amara.okafor")
    assert told.text.startswith(
        f"Ben Carter (Royal Wolverhampton NHS Trust) proposes a resolution to {opened}."
    )
    assert {b.label for b in told.buttons} >= {"Confirm resolution", "Reject resolution"}


def test_a_resolution_may_have_no_agreed_action(core: Core, opened: str) -> None:
    outcome = act(
        core,
        opened,
        "ben.carter",
        ActionId.PROPOSE_RESOLUTION,
        outcome="Agreed to close.",
        action_1="skip",
    )
    assert outcome.ok, outcome.text
    assert load(core, opened).resolution.actions == []


def test_a_review_date_in_the_past_is_refused(ctx: FlowContext) -> None:
    runner = FlowRunner(action_flows()[ActionId.PROPOSE_RESOLUTION].flow, ctx)
    for q_id, answer in [("outcome", "o"), ("action_1", "a"), ("owner_1", "1")]:
        assert runner.answer(q_id, answer).accepted
    assert runner.answer("review_1", "yesterday").error == "The review date cannot be in the past."


def test_the_other_party_confirms_a_resolution_and_the_dispute_is_resolved(
    core: Core, opened: str
) -> None:
    act(
        core,
        opened,
        "ben.carter",
        ActionId.PROPOSE_RESOLUTION,
        outcome="Joint visit.",
        action_1="Visit",
        owner_1="amara.okafor",
        review_1="1/12/2026",
        more_1="no",
    )
    outcome = act(core, opened, "amara.okafor", ActionId.CONFIRM_RESOLUTION)
    assert outcome.ok
    assert (
        outcome.text == f"{opened} is resolved. Both agencies have the agreed outcome in writing."
    )
    assert load(core, opened).status == Status.RESOLVED
    confirmed = [m for m in to(core, "ben.carter") if "is resolved" in m.text]
    assert len(confirmed) == 1
    assert (
        "Action 1",
        "Visit - Amara Okafor (City of Wolverhampton Council - Children's Social Care), review Tue 1 Dec 2026",
    ) in confirmed[0].facts


def test_the_proposer_cannot_confirm_their_own_resolution(core: Core, opened: str) -> None:
    act(
        core,
        opened,
        "ben.carter",
        ActionId.PROPOSE_RESOLUTION,
        outcome="Joint visit.",
        action_1="skip",
    )
    outcome = act(core, opened, "ben.carter", ActionId.CONFIRM_RESOLUTION)
    assert not outcome.ok
    assert "the other agency must confirm or reject this resolution" in outcome.text
    assert load(core, opened).status == Status.RESOLUTION_PROPOSED


def test_the_other_party_rejects_a_resolution_with_a_reason_and_the_dispute_carries_on(
    core: Core, opened: str
) -> None:
    act(
        core,
        opened,
        "ben.carter",
        ActionId.PROPOSE_RESOLUTION,
        outcome="Close it.",
        action_1="skip",
    )
    outcome = act(
        core,
        opened,
        "amara.okafor",
        ActionId.REJECT_RESOLUTION,
        reason="The bruising is unexplained.",
    )
    assert outcome.ok
    assert outcome.text == f"You rejected the proposed resolution; {opened} continues at stage 1."
    assert load(core, opened).status == Status.OPEN
    rejected = [m for m in to(core, "ben.carter") if "rejected" in m.text]
    assert ("Reason", "The bruising is unexplained.") in rejected[0].facts


def test_confirming_when_nothing_is_proposed_gives_a_reason(core: Core, opened: str) -> None:
    outcome = act(core, opened, "amara.okafor", ActionId.CONFIRM_RESOLUTION)
    assert not outcome.ok
    assert (
        outcome.text == "Sorry, you can't do that: there is no proposed resolution to respond to."
    )


def test_the_raising_agency_records_a_reason_for_delay(core: Core, opened: str) -> None:
    outcome = act(
        core,
        opened,
        "amara.okafor",
        ActionId.RECORD_DELAY_REASON,
        reason="Waiting for the GP's records.",
        safety_confirmed="yes",
    )
    assert outcome.ok and outcome.text == f"The reason for delay is on the record of {opened}."
    (delay,) = events(core, opened, "DelayReasonRecorded")
    assert delay["reason"] == "Waiting for the GP's records."
    assert delay["safety_confirmed"] is True


def test_the_receiving_agency_is_told_the_raising_agency_records_delay(
    core: Core, opened: str
) -> None:
    outcome = act(
        core, opened, "ben.carter", ActionId.RECORD_DELAY_REASON, reason="r", safety_confirmed="no"
    )
    assert not outcome.ok
    assert outcome.text == (
        "Sorry, you can't do that: the escalating agency records the reasons for delay."
    )
    assert events(core, opened, "DelayReasonRecorded") == []


def test_a_learning_point_is_recorded(core: Core, opened: str) -> None:
    outcome = act(
        core,
        opened,
        "ben.carter",
        ActionId.RECORD_LEARNING,
        text="Share bruising concerns the same day.",
    )
    assert outcome.ok
    assert outcome.text == f"Learning point recorded for {opened}; it will go to the board."
    (learning,) = events(core, opened, "LearningRecorded")
    assert learning["text"] == "Share bruising concerns the same day."


def test_the_raiser_withdraws_and_the_other_party_is_told(core: Core, opened: str) -> None:
    outcome = act(core, opened, "amara.okafor", ActionId.WITHDRAW, reason="Resolved by phone.")
    assert outcome.ok and outcome.text == f"{opened} is withdrawn."
    assert load(core, opened).status == Status.WITHDRAWN
    (told,) = to(core, "ben.carter")
    assert told.text == (
        f"Amara Okafor (City of Wolverhampton Council - Children's Social Care) withdrew {opened}."
    )
    assert ("Reason", "Resolved by phone.") in told.facts
    # Withdrawn: nothing more can move it on.
    again = act(core, opened, "ben.carter", ActionId.ESCALATE, reason="r")
    assert not again.ok and again.text == f"Sorry, you can't do that: {opened} is withdrawn."


def test_only_the_raising_agency_can_withdraw(core: Core, opened: str) -> None:
    outcome = act(core, opened, "ben.carter", ActionId.WITHDRAW, reason="Not our problem.")
    assert not outcome.ok
    assert outcome.text == (
        "Sorry, you can't do that: only the agency that raised a dispute can withdraw it."
    )
    assert load(core, opened).status == Status.OPEN


@pytest.mark.parametrize(
    ("button", "answers", "reason"),
    [
        (ActionId.ACKNOWLEDGE, {}, "you are not in either agency of this dispute"),
        (ActionId.ESCALATE, {"reason": "r"}, "you are not in either agency of this dispute"),
        (
            ActionId.ADD_NOTE,
            {"text": "t", "with_whom": "", "held_on": ""},
            "only the people involved in this dispute can see or add to it",
        ),
        (ActionId.WITHDRAW, {"reason": "r"}, "you are not in either agency of this dispute"),
    ],
)
def test_an_unrelated_person_is_refused_with_a_reason_and_nothing_changes(
    core: Core, opened: str, button: ActionId, answers: dict[str, str], reason: str
) -> None:
    before = load(core, opened)
    outcome = act(core, opened, "dan.fielding", button, **answers)
    assert not outcome.ok
    assert outcome.text == f"Sorry, you can't do that: {reason}."
    after = load(core, opened)
    assert (after.stage, after.status, after.notes) == (before.stage, before.status, before.notes)
    assert outbox(core) == []
    # The refusal itself is on the record, and nothing else is.
    types = event_types(core, opened)
    assert types[-1] == "ActionRefused"
    assert not {"Acknowledged", "StageEscalated", "NoteAdded", "DisputeWithdrawn"} & set(types)


def test_acting_on_an_unknown_reference_gives_a_clear_answer(core: Core) -> None:
    ben = core.service.directory.get("ben.carter")
    assert ben is not None
    outcome = core.conversations.run_action("WST-2026-0042", ben, ActionId.ACKNOWLEDGE, {})
    assert not outcome.ok
    assert outcome.text == "There is no dispute with reference WST-2026-0042."


# --- text commands ------------------------------------------------------------------------


def test_list_shows_my_open_disputes_with_their_next_deadline(core: Core, opened: str) -> None:
    d = core.service.directory
    reply = core.conversations.command("escalate list", d.get("amara.okafor"))
    assert reply is not None and reply.ok
    assert reply.text == "Your open disputes (1):"
    assert reply.facts == [
        (
            opened,
            "stage 1 (Practitioners), open, next deadline Tue 1 Dec, 17:00; you are the raiser",
        )
    ]
    reply = core.conversations.command("list", d.get("ben.carter"))
    assert reply is not None
    assert reply.facts[0][1].endswith("you are the receiving agency's practitioner")


def test_list_says_so_when_there_is_nothing_open(core: Core, opened: str) -> None:
    reply = core.conversations.command("escalate list", core.service.directory.get("dan.fielding"))
    assert reply is not None and reply.text == "You have no open disputes."


def test_list_marks_an_overdue_deadline(core: Core, opened: str, clock: FakeClock) -> None:
    clock.set(datetime(2026, 12, 1, 17, 30, tzinfo=UTC))
    reply = core.conversations.command("list", core.service.directory.get("amara.okafor"))
    assert reply is not None
    assert "next deadline Tue 1 Dec, 17:00 - overdue" in reply.facts[0][1]


def test_status_shows_stage_deadlines_and_the_buttons_i_may_press(core: Core, opened: str) -> None:
    reply = core.conversations.command(
        f"escalate status {opened.lower()}", core.service.directory.get("ben.carter")
    )
    assert reply is not None and reply.ok
    assert reply.text == opened
    facts = dict(reply.facts)
    assert facts["Stage"] == "1 of 4: Practitioners"
    assert facts["Case reference"] == "CS-204611"
    assert facts["Overall target"] == "Wed 9 Dec, 17:00"  # 10 working days from Wed 25 Nov
    assert (
        facts[
            "Due: Read the case file, speak to the disputing practitioner and seek a mutually "
            "agreeable way forward"
        ]
        == "Tue 1 Dec, 17:00"
    )
    labels = [b.label for b in reply.buttons]
    assert "Acknowledge" in labels and "Escalate" in labels
    assert "Withdraw" not in labels  # only the raising agency may
    assert all(b.ref == opened for b in reply.buttons)


def test_status_of_a_malformed_reference_says_what_one_looks_like(core: Core) -> None:
    reply = core.conversations.command(
        "escalate status <!channel>", core.service.directory.get("amara.okafor")
    )
    assert reply is not None and not reply.ok
    assert reply.text == (
        "'<!channel>' doesn't look like a dispute reference (for example WST-2026-0001)."
    )


def test_status_of_an_unknown_reference_says_there_is_none(core: Core) -> None:
    reply = core.conversations.command(
        "escalate status WST-2026-0999", core.service.directory.get("amara.okafor")
    )
    assert reply is not None and not reply.ok
    assert reply.text == "There is no dispute with reference WST-2026-0999."


def test_status_without_a_reference_asks_which(core: Core) -> None:
    reply = core.conversations.command("status", core.service.directory.get("amara.okafor"))
    assert reply is not None and not reply.ok
    assert reply.text.startswith("Which dispute?")


def test_status_is_refused_to_someone_not_involved_without_showing_details(
    core: Core, opened: str
) -> None:
    reply = core.conversations.command(
        f"escalate status {opened}", core.service.directory.get("dan.fielding")
    )
    assert reply is not None and not reply.ok
    assert reply.text == (
        f"Sorry, you can't see {opened}: only the people involved in this dispute can see or add "
        "to it."
    )
    assert reply.facts == [] and reply.buttons == []


def test_a_line_manager_in_the_chain_may_see_the_status(core: Core, opened: str) -> None:
    reply = core.conversations.command(f"status {opened}", core.service.directory.get("tom.hadley"))
    assert reply is not None and reply.ok


def test_timeline_gives_real_dates_from_the_clocks_today(core: Core) -> None:
    reply = core.conversations.command("escalate timeline", None)
    assert reply is not None and reply.ok
    assert reply.text.startswith("Wolverhampton Safeguarding Together: if a disagreement arose now")
    assert reply.facts[0] == (
        "Stage 1 (Practitioners): Raise the disagreement with the other practitioner, verbally "
        "and in writing, with evidence-based reasons",
        "2 working days - by Mon 30 Nov, 17:00",
    )
    assert reply.facts[1][1] == "3 working days - by Thu 3 Dec, 17:00"


def test_timeline_moves_with_the_clock_and_skips_christmas(core: Core, clock: FakeClock) -> None:
    clock.set(datetime(2026, 12, 21, 10, 0, tzinfo=UTC))  # Monday before Christmas
    reply = core.conversations.command("timeline", None)
    assert reply is not None
    assert reply.facts[0][1] == "2 working days - by Wed 23 Dec, 17:00"
    # Thu 24, then Christmas, the weekend and Boxing Day's substitute on Mon 28 Dec are skipped.
    assert reply.facts[1][1] == "3 working days - by Wed 30 Dec, 17:00"


def test_help_lists_the_commands(core: Core) -> None:
    reply = core.conversations.command("escalate help", None)
    assert reply is not None and reply.ok
    for command in ["escalate list", "escalate status REF", "escalate timeline", "escalate help"]:
        assert command in reply.text


def test_an_unknown_command_says_so_and_shows_help(core: Core) -> None:
    reply = core.conversations.command(
        "escalate frobnicate", core.service.directory.get("amara.okafor")
    )
    assert reply is not None and not reply.ok
    assert reply.text.startswith("I don't know the command 'frobnicate'.\nCommands:")


def test_escalate_on_its_own_starts_the_intake(core: Core) -> None:
    amara = core.service.directory.get("amara.okafor")
    assert core.conversations.command("escalate", amara) is None
    assert core.conversations.command("/escalate", amara) is None


def test_conversations_read_the_clock_they_are_given(core: Core, clock: FakeClock) -> None:
    clock.set(datetime(2027, 1, 4, 12, 0, tzinfo=UTC))
    conversations = Conversations(core.service)
    assert conversations.context(None).today == date(2027, 1, 4)


def test_a_whole_form_from_someone_unknown_at_immediate_risk_pings_their_lead_once(
    core: Core,
) -> None:
    runner = core.conversations.resume("teams:new", None, display_name="Zed Okoro")
    errors, notices = runner.answer_all({**GOOD_INTAKE, "immediate_risk": "yes", "own_name": ""})
    assert errors == {}
    assert all(n.urgent for n in notices) and len(notices) == 2
    core.conversations.on_notices("teams:new", runner, notices)
    assert len(to(core, "nadia.haddad")) == 1
    assert dispute_count(core) == 0
