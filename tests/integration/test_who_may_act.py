"""Who may act: every action, every person in the example directory, a dispute at stage 1, at
stage 2, and with a resolution proposed. The expected table is worked out here from the policy's
stage roles and the directory file's line management, independently of `Dispute.allowed`, and
compared with what the domain, the Service and Slack's buttons actually let each person do.

Amara Okafor (children's social care) raises a disagreement with the Royal Wolverhampton NHS
Trust, naming Ben Carter. Stage 1 is for the two practitioners, stage 2 for their line managers;
line managers up the chain and each agency's designated safeguarding lead may step in.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLE_CONFIG
from fakes.slack_signing import block_actions_body, block_actions_payload, signed_headers
from slackbot import SECRET, SlackBot, slack_bot, slack_id_of

from bot.app import Core
from bot.clock import FakeClock
from bot.config import load_partnership
from bot.disputes import Action, DisputeDetails, to_data
from bot.flows.actions import action_flows
from bot.messages import ActionId

RAISING, RECEIVING = "cwc-childrens", "rwt"
RAISER, NAMED = "amara.okafor", "ben.carter"
SCENARIOS = ("stage 1", "stage 2", "resolution proposed")
REFUSED = "Sorry, you can't"

# --- the expected table, from the files ---------------------------------------------------------


@cache
def directory_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLE_CONFIG.parent / "directory.yaml").read_text())
    return data


@cache
def people() -> dict[str, dict[str, Any]]:
    found = {p["id"]: p for p in directory_file()["people"]}
    # Deputies stand in only for someone away: nobody is, so nobody is stood in for.
    assert not any(p.get("away") for p in found.values())
    return found


def roles(pid: str) -> set[str]:
    held = people()[pid].get("roles", ["practitioner"])
    return {held} if isinstance(held, str) else set(held)


def managers(pid: str) -> list[str]:
    """Line management upwards, nearest first."""
    out: list[str] = []
    current = people()[pid].get("manager")
    while current and current not in out and current != pid:
        out.append(current)
        current = people()[current].get("manager")
    return out


def agency_holders(agency: str, role: str) -> list[str]:
    found = [pid for pid, p in people().items() if p["agency"] == agency and role in roles(pid)]
    if found:
        return found
    # Partnership-wide roles are held by the partnership itself.
    return [
        pid
        for a in directory_file()["agencies"]
        if a.get("kind") == "partnership" and a["id"] != agency
        for pid, p in people().items()
        if p["agency"] == a["id"] and role in roles(pid)
    ]


def holders(agency: str, role: str, named: str) -> list[str]:
    """Who holds `role` for the side whose practitioner is `named`: up their line first."""
    if role == "practitioner":
        return [named]
    up = managers(named)
    if role == "line_manager" and up:
        return [up[0]]
    found = [m for m in up if role in roles(m)][:1]
    return found or agency_holders(agency, role)


SIDES = {"raising": (RAISING, RAISER), "receiving": (RECEIVING, NAMED)}


def side_of(pid: str) -> str | None:
    agency = people()[pid]["agency"]
    return next((side for side, (a, _) in SIDES.items() if a == agency), None)


def expected_table(stage: int, proposed_by: str | None = None) -> dict[Action, set[str]]:
    """Who may do each action, from the policy's stage roles and the directory file."""
    policy = load_partnership(EXAMPLE_CONFIG).policy
    for number in range(1, stage + 1):
        # Steps here act for a side, never for a role of their own (which would change who acts).
        assert all(s.who in ("both", "raising", "receiving") for s in policy.stage(number).steps)
    everyone = set(people())
    admins = {pid for pid in everyone if "admin" in roles(pid)}
    actors: dict[str, set[str]] = {}
    backers: dict[str, set[str]] = {}
    involved = set(admins)
    for side, (agency, named) in SIDES.items():
        actors[side] = set(holders(agency, policy.stage(stage).roles[side], named))  # type: ignore[index]
        leads = set(agency_holders(agency, "designated_safeguarding_lead"))
        backers[side] = (
            {m for a in actors[side] for m in managers(a)} | set(managers(named)) | leads
        )
        for number in range(1, stage + 1):
            involved |= set(holders(agency, policy.stage(number).roles[side], named))  # type: ignore[index]
        involved |= {named, *managers(named), *leads}
    both_actors = actors["raising"] | actors["receiving"]
    steps_in = {
        pid for side in SIDES for pid in actors[side] | backers[side] if side_of(pid) == side
    }
    raising_side = {pid for pid in everyone if side_of(pid) == "raising"}
    return {
        Action.VIEW: involved,
        Action.ADD_NOTE: involved,
        Action.RECORD_LEARNING: involved,
        Action.CLOSE: admins,
        Action.REVIEW_ACTIONS: set(),  # nothing agreed yet
        Action.SNOOZE: set(),  # no reminder has gone out yet
        Action.ACKNOWLEDGE: both_actors - {RAISER},
        Action.ESCALATE: steps_in | admins,
        Action.PROPOSE_RESOLUTION: steps_in,
        Action.RESPOND_TO_RESOLUTION: (
            set()
            if proposed_by is None
            else {pid for pid in steps_in if side_of(pid) not in (None, side_of(proposed_by))}
        ),
        Action.RECORD_DELAY_REASON: (steps_in | {RAISER}) & raising_side,
        Action.WITHDRAW: ((steps_in | {RAISER}) & raising_side) | admins,
    }


def expected(scenario: str) -> dict[Action, set[str]]:
    if scenario == "stage 1":
        return expected_table(1)
    if scenario == "stage 2":
        return expected_table(2)
    return expected_table(1, proposed_by=NAMED)


def test_the_expected_table_reads_as_the_policy_says() -> None:
    # A few rows checked by eye against the policy, so the oracle itself is not wrong.
    one, two = expected_table(1), expected_table(2)
    assert one[Action.ACKNOWLEDGE] == {"ben.carter"}
    assert two[Action.ACKNOWLEDGE] == {"tom.hadley", "rosa.delgado"}
    assert one[Action.CLOSE] == {"helen.marsh", "george.ellis"}
    assert {"amara.okafor", "tom.hadley", "grace.mensah", "olivia.brandt"} <= one[Action.WITHDRAW]
    assert "ben.carter" not in one[Action.WITHDRAW] and "dan.fielding" not in one[Action.VIEW]
    assert "priya.nair" not in one[Action.VIEW], "a colleague on the same team sees nothing"
    assert expected("resolution proposed")[Action.RESPOND_TO_RESOLUTION] == {
        "amara.okafor",
        "tom.hadley",
        "grace.mensah",
        "olivia.brandt",
    }


# --- the disputes ---------------------------------------------------------------------------


def open_scenario(core: Core, scenario: str) -> str:
    """A fresh dispute in the scenario's state, made through the Service."""
    outcome = core.service.open(
        DisputeDetails(
            raised_by=RAISER,
            raising_agency=RAISING,
            receiving_agency=RECEIVING,
            receiving_person=NAMED,
            category="threshold",
            case_ref="CS-204611",
            decision="The referral was closed with no further action.",
            reasons="Three missed health appointments.",
            outcome_sought="A strategy discussion.",
            disagreement_date=core.service.clock.now().date(),
        )
    )
    assert outcome.ok and outcome.dispute is not None, outcome.text
    ref = outcome.dispute.ref
    if scenario == "stage 2":
        done = core.service.act(ref, RAISER, Action.ESCALATE, reason="No reply.")
        assert done.ok and done.dispute is not None and done.dispute.stage == 2
    if scenario == "resolution proposed":
        done = core.service.act(ref, NAMED, Action.PROPOSE_RESOLUTION, outcome="We agree.")
        assert done.ok, done.text
    return ref


def state(core: Core, ref: str) -> tuple[dict[str, Any], list[str]]:
    """The dispute as stored, and its events other than recorded refusals."""
    with core.store.unit() as session:
        dispute = core.store.load(session, ref)
        events = [e.type for e in core.store.events(session, ref) if e.type != "ActionRefused"]
    return to_data(dispute), events


KWARGS: dict[Action, dict[str, Any]] = {
    Action.ACKNOWLEDGE: {},
    Action.ADD_NOTE: {"text": "Spoke on the phone."},
    Action.ESCALATE: {"reason": "No agreement."},
    Action.PROPOSE_RESOLUTION: {"outcome": "A strategy discussion on Monday."},
    Action.RESPOND_TO_RESOLUTION: {"confirm": True},
    Action.RECORD_DELAY_REASON: {"reason": "Waiting for records.", "safety_confirmed": True},
    Action.RECORD_LEARNING: {"text": "Share discharge plans earlier."},
    Action.WITHDRAW: {"reason": "Resolved informally."},
    Action.REVIEW_ACTIONS: {"implemented": True},
    Action.SNOOZE: {},
    Action.CLOSE: {"reason": "Duplicate."},
}


def diff(actual: dict[Action, set[str]], wanted: dict[Action, set[str]]) -> dict[str, Any]:
    return {
        action.value: {
            "let in wrongly": sorted(actual[action] - wanted[action]),
            "kept out wrongly": sorted(wanted[action] - actual[action]),
        }
        for action in Action
        if actual[action] != wanted[action]
    }


# --- the domain and the Service ----------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_domain_allows_exactly_the_expected_people(core: Core, scenario: str) -> None:
    ref = open_scenario(core, scenario)
    with core.store.unit() as session:
        dispute = core.store.load(session, ref)
    directory = core.service.directory
    actual = {
        action: {p.id for p in directory if dispute.allowed(p, action, directory) is None}
        for action in Action
    }
    assert diff(actual, expected(scenario)) == {}


@pytest.mark.parametrize("scenario", ["stage 1", "stage 2"])
def test_through_the_service_only_the_allowed_can_act_and_a_refusal_changes_nothing(
    core: Core, scenario: str
) -> None:
    wanted = expected(scenario)
    actual: dict[Action, set[str]] = {action: set() for action in Action}
    ref = open_scenario(core, scenario)
    before = state(core, ref)
    for action in Action:
        for pid in people():
            if action == Action.VIEW:
                outcome = core.service.view(ref, pid)
                let_in = outcome.ok
            else:
                outcome = core.service.act(ref, pid, action, **KWARGS[action])
                # Let in: done, or turned down for what the dispute is, never for who they are.
                let_in = not outcome.text.startswith(REFUSED)
            if not let_in:
                assert not outcome.ok, (action, pid)
                if outcome.dispute is not None:
                    # What was saved with the refusal is the dispute exactly as it was.
                    assert to_data(outcome.dispute) == before[0], (action, pid)
                continue
            actual[action].add(pid)
            if state(core, ref) != before:
                ref = open_scenario(core, scenario)  # the next person meets the same state
                before = state(core, ref)
        # Refusals added nothing to the record but the refusals themselves.
        assert state(core, ref) == before, f"a refused {action} changed the dispute"
    assert diff(actual, wanted) == {}


# --- Slack buttons ------------------------------------------------------------------------------

# Every button, and the action it stands for (View details is the one with no flow).
BUTTONS: dict[ActionId, Action] = {
    **{button: flow.action for button, flow in action_flows().items()},
    ActionId.VIEW_DETAILS: Action.VIEW,
}
# Buttons that act at once, with no form: the only ones whose click may change the dispute.
INSTANT = {button for button, flow in action_flows().items() if not flow.flow.questions}


def test_every_button_is_checked() -> None:
    assert set(BUTTONS) == set(ActionId)
    assert set(BUTTONS.values()) == set(Action) - {Action.CLOSE}  # closing is an admin command
    assert {ActionId.ACKNOWLEDGE, ActionId.CONFIRM_RESOLUTION, ActionId.SNOOZE} <= INSTANT


@pytest.fixture
async def bot(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Any:
    async with slack_bot(tmp_path, clock, monkeypatch) as running:
        yield running


@pytest.mark.parametrize("scenario", ["stage 1", "stage 2"])
async def test_through_slack_buttons_a_refused_person_is_told_privately_and_nothing_changes(
    bot: SlackBot, scenario: str
) -> None:
    wanted = expected(scenario)
    core = bot.core
    ref = open_scenario(core, scenario)
    actual: dict[Action, set[str]] = {action: set() for action in Action}
    trigger = 0
    before = state(core, ref)
    for button, action in BUTTONS.items():
        for pid in people():
            user = slack_id_of(pid)
            trigger += 1
            bot.api.ephemerals.clear()
            opened = len(bot.api.views)
            response = await bot.click(button.value, ref, user, trigger_id=f"T{trigger}")
            assert response.status == 200
            await bot.server.settle()
            told = [e.text or "" for e in bot.api.ephemerals if e.user == user]
            if any(t.startswith(REFUSED) for t in told):
                assert len(bot.api.views) == opened, "no form for someone refused"
                continue
            actual[action].add(pid)
            if button in INSTANT:
                after = state(core, ref)
                # Let in: the thing done, or said privately why there was nothing to do.
                assert after != before or told, (button, pid)
                if after != before:
                    ref = open_scenario(core, scenario)
                    before = state(core, ref)
            else:
                assert len(bot.api.views) == opened + 1, (button, pid)  # its form, or details
        # Forms and refusals change nothing: checked once per button, not per click.
        assert state(core, ref) == before, f"a {button} click changed the dispute"
    # Closing has no button: it is compared through the Service above.
    actual[Action.CLOSE] = wanted[Action.CLOSE]
    assert diff(actual, wanted) == {}


async def test_a_forged_user_id_without_a_valid_signature_changes_nothing(bot: SlackBot) -> None:
    ref = open_scenario(bot.core, "stage 1")
    before = state(bot.core, ref), bot.row_counts()
    dan = block_actions_body(
        block_actions_payload("acknowledge", ref, user_id=slack_id_of("dan.fielding"))
    )
    headers = signed_headers(SECRET, dan)
    # Dan's own request, signed, with Ben's user id put in after signing.
    forged = dan.replace(slack_id_of("dan.fielding").encode(), slack_id_of(NAMED).encode())
    ben = block_actions_body(block_actions_payload("acknowledge", ref, user_id=slack_id_of(NAMED)))
    attempts = [
        (forged, headers),
        (ben, signed_headers("a-guessed-secret", ben)),
        (ben, {"Content-Type": "application/x-www-form-urlencoded"}),  # no signature at all
        (ben, {**signed_headers(SECRET, ben), "X-Slack-Signature": "v0=" + "0" * 64}),
    ]
    for body, sent in attempts:
        response = await bot.post(body, sent)
        assert response.status == 401
    await bot.server.settle()
    assert (state(bot.core, ref), bot.row_counts()) == before
    assert bot.api.calls == [], "not even a user lookup"
    # The real Ben, properly signed, can.
    assert (await bot.click("acknowledge", ref, slack_id_of(NAMED))).status == 200
    await bot.server.settle()
    assert "Acknowledged" in state(bot.core, ref)[1]


def test_the_scenarios_are_dated_as_the_clock_says(core: Core) -> None:
    ref = open_scenario(core, "stage 1")
    data, events = state(core, ref)
    assert data["details"]["disagreement_date"] == date(2026, 11, 26).isoformat()
    assert events[0] == "DisputeOpened"
    assert json.dumps(data)  # plain data


async def test_a_refused_click_on_a_form_button_is_on_the_record(bot: SlackBot) -> None:
    # Someone who may see the dispute but not do what a form button is for: they get no
    # form, are told why privately, and the attempt is recorded, as a refused action always is.
    core = bot.core
    ref = open_scenario(core, "stage 1")
    may = expected("stage 1")
    button, outsider = next(
        (button, p)
        for button, action in BUTTONS.items()
        if button not in INSTANT and action != Action.VIEW
        for p in people()
        if p in may[Action.VIEW] and p not in may[action]
    )
    before = state(core, ref)
    response = await bot.click(button.value, ref, slack_id_of(outsider))
    assert response.status == 200
    await bot.server.settle()
    assert bot.api.views == []
    (told,) = [e.text or "" for e in bot.api.ephemerals if e.user == slack_id_of(outsider)]
    assert told.startswith(REFUSED)
    with core.store.unit() as session:
        refused = [e for e in core.store.events(session, ref) if e.type == "ActionRefused"]
    assert [(e.actor, e.data["action"]) for e in refused] == [(outsider, BUTTONS[button].value)]
    assert state(core, ref) == before
