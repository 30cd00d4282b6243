"""Teams, hostile and broken: activities properly signed by the (fake) Bot Framework service but
missing `from`, `conversation` or a usable `value`, buttons and forms of older cards, verbs the
bot does not have; and who may act, person by person, through Teams' buttons.

Runs on the Teams harness of tests/integration/test_teams.py (the fake Bot Connector, its
tokens, and the guard against any outside call).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from test_teams import (  # the harness, and its fixtures
    AMARA,
    BEN,
    Teams,
    User,
    activity,
    no_outside_calls,
    teams,
)
from test_who_may_act import BUTTONS, diff, expected, open_scenario, people, state

from bot.disputes import Action
from store.models import ConversationRefRow, DisputeRow, EventRow, OutboxRow

__all__ = ["no_outside_calls", "teams"]  # fixtures, used by name
LEAKS = ("Traceback", 'File "', ".py", "Exception")
REFUSED = "Sorry, you can't"


def footprint(t: Teams) -> tuple[int, int, int]:
    """Disputes, events and messages: what a malformed activity must never add to. (Where the
    signed sender can be reached is saved on every turn, by design: that is not counted.)"""
    with t.core.store.unit() as session:
        return tuple(  # type: ignore[return-value]
            session.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (DisputeRow.__table__, EventRow.__table__, OutboxRow.__table__)
        )


def malformed(t: Teams) -> dict[str, dict[str, Any]]:
    url = t.fake.service_url
    text = activity(AMARA, url, text="escalate status WST-2026-0001")
    cases: dict[str, dict[str, Any]] = {}
    for key in ("from", "conversation", "recipient", "channelId", "id", "type"):
        cases[f"no {key}"] = {k: v for k, v in text.items() if k != key}
    cases["an empty from"] = {**copy.deepcopy(text), "from": {}}
    cases["a from that is a string"] = {**copy.deepcopy(text), "from": "amara"}
    cases["an empty conversation"] = {**copy.deepcopy(text), "conversation": {}}
    cases["a conversation that is a list"] = {**copy.deepcopy(text), "conversation": [1]}
    values: list[Any] = [
        {"action": "frobnicate", "ref": "WST-2026-0001"},
        {"action": "acknowledge"},
        {"ref": "WST-2026-0001"},
        {"verb": "approve", "data": {"x": 1}},
        {"form": "intake_v0", "case": "CS-1"},
        {"form": "action"},
        {"form": "action", "action": "fast_track", "ref": "WST-2026-0001"},
        {"form": "action", "action": "escalate", "ref": "WST-2026-0001", "reason": 5},
        {"form": "intake", "immediate_risk": ["yes"], "scope": {"a": 1}},
        {"action": "acknowledge", "ref": "<at>x</at>" * 50},
        {"action": None, "ref": None},
        [1, 2],
        "acknowledge",
        42,
    ]
    for value in values:
        body = activity(AMARA, url)
        body["value"] = value
        cases[f"value {json.dumps(value)[:60]}"] = body
    return cases


async def test_malformed_signed_activities_get_a_4xx_or_a_polite_answer_and_change_nothing(
    teams: Teams,
) -> None:
    await teams.say(AMARA, "help")  # Amara is found by her email and remembered, once
    before = footprint(teams)
    problems = []
    for name, body in malformed(teams).items():
        response = await teams.post(body)
        shown = await response.text()
        await teams.deliver()
        if response.status >= 500:
            problems.append(f"{name}: HTTP {response.status}")
        if any(word in shown for word in LEAKS):
            problems.append(f"{name}: the answer shows {shown[:200]!r}")
        if footprint(teams) != before:
            problems.append(f"{name}: a dispute, event or message was written")
    assert problems == []
    # Still serving.
    assert (await teams.client.get("/healthz")).status == 200
    await teams.say(AMARA, "help")


@pytest.mark.parametrize("service_url", ["missing", None, "", "   ", "smba.example/uk"])
async def test_a_signed_activity_with_no_service_url_is_refused_before_anything_is_sent(
    teams: Teams, no_outside_calls: list[str], service_url: str | None
) -> None:
    # Without one, botbuilder would answer at its default, api.botframework.com.
    body = activity(AMARA, teams.fake.service_url, text="escalate help")
    if service_url == "missing":
        del body["serviceUrl"]
    else:
        body["serviceUrl"] = service_url
    before = footprint(teams)
    response = await teams.post(body)
    await teams.deliver()
    assert response.status == 400
    assert "serviceUrl" in await response.text()
    assert teams.fake.sent() == [] and teams.fake.requests == []
    assert no_outside_calls == []
    assert footprint(teams) == before


@pytest.mark.parametrize("sender", ["missing", None, {}, {"name": "Amara Okafor"}, {"id": ""}])
async def test_an_activity_from_nobody_is_refused_with_the_reason(
    teams: Teams, sender: Any
) -> None:
    body = activity(AMARA, teams.fake.service_url, text="escalate help")
    if sender == "missing":
        del body["from"]
    else:
        body["from"] = sender
    response = await teams.post(body)
    await teams.deliver()
    assert response.status == 400
    assert "from" in await response.text()
    assert teams.fake.sent() == []
    with teams.core.store.unit() as session:
        assert session.execute(select(func.count()).select_from(ConversationRefRow)).scalar() == 0
    # A proper activity from the same chat is answered as ever.
    await teams.say(AMARA, "escalate help")
    assert len(teams.fake.sent()) == 1


async def test_buttons_and_forms_of_older_cards_are_answered_politely(teams: Teams) -> None:
    await teams.say(AMARA, "help")
    url = teams.fake.service_url
    for value in (
        {"action": "frobnicate", "ref": "WST-2026-0001"},
        {"form": "old_form"},
        {"form": "action", "action": "fast_track", "ref": "WST-2026-0001"},
    ):
        sent = len(teams.fake.sent())
        body = activity(AMARA, url, value=value)
        assert (await teams.post(body)).status == 202
        await teams.deliver()
        said = json.dumps([r.activity for r in teams.fake.sent()[sent:]])
        assert "out of date" in said, value


async def test_an_action_execute_verb_the_bot_does_not_have_is_answered_politely(
    teams: Teams,
) -> None:
    # The bot's cards use Action.Submit; an Action.Execute from some other card arrives as an
    # invoke. Bot Framework would answer 501; the bot answers on the card, and nothing changes.
    before = footprint(teams)
    body = activity(AMARA, teams.fake.service_url, kind="invoke")
    body["name"] = "adaptiveCard/action"
    body["value"] = {"action": {"type": "Action.Execute", "verb": "approveAll", "data": {}}}
    response = await teams.post(body)
    assert response.status == 200
    answer = await response.json()
    assert answer["statusCode"] == 200 and "out of date" in answer["value"]
    assert footprint(teams) == before


# --- who may act, through Teams' buttons ----------------------------------------------------


def teams_user(pid: str) -> User:
    person = people()[pid]
    return User(pid.replace(".", "-"), person["name"], person["email"])


async def test_through_teams_buttons_only_the_allowed_can_act_and_a_refusal_changes_nothing(
    teams: Teams,
) -> None:
    scenario = "stage 2"
    wanted = expected(scenario)
    for pid in people():
        user = teams_user(pid)
        teams.fake.add_member(user.id, user.aad, user.name, user.email)
    core = teams.core
    ref = open_scenario(core, scenario)
    before = state(core, ref)
    actual: dict[Action, set[str]] = {action: set() for action in Action}
    # One button per action (Slack's test presses every button): each Teams turn is costly.
    one_each = {action: button for button, action in reversed(BUTTONS.items())}
    for action, button in one_each.items():
        for pid in people():
            user = teams_user(pid)
            sent = len(teams.fake.sent())
            body = activity(
                user, teams.fake.service_url, value={"action": button.value, "ref": ref}
            )
            assert (await teams.post(body)).status == 202
            await teams.server.settle()
            said = json.dumps([r.activity for r in teams.fake.sent()[sent:]])
            if REFUSED in said:
                continue
            actual[action].add(pid)
            after = state(core, ref)
            if after != before:
                ref = open_scenario(core, scenario)
                before = state(core, ref)
        assert state(core, ref) == before, f"a refused {button} changed the dispute"
    actual[Action.CLOSE] = wanted[Action.CLOSE]  # no button: checked through the Service
    assert diff(actual, wanted) == {}


async def test_ben_acknowledging_in_teams_is_recorded_once(teams: Teams) -> None:
    ref = open_scenario(teams.core, "stage 1")
    body = activity(BEN, teams.fake.service_url, value={"action": "acknowledge", "ref": ref})
    for _ in range(2):
        assert (await teams.post(copy.deepcopy(body))).status == 202
    await teams.deliver()
    assert state(teams.core, ref)[1].count("Acknowledged") == 1
