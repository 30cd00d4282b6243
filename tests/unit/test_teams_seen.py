"""`seen_in`: the activity fields a conversation reference is made from. Two activities with
the same fields must give the same reference (else a changed reference would not be saved),
and each field that changes the reference must change them."""

from __future__ import annotations

from typing import Any

import pytest
from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.adapters.teams.bot import seen_in
from bot.adapters.teams.platform import from_reference

BASE: dict[str, Any] = {
    "type": "message",
    "id": "1700000000001",
    "serviceUrl": "https://smba.trafficmanager.net/uk/",
    "channelId": "msteams",
    "locale": "en-GB",
    "from": {"id": "29:amara", "name": "Amara Okafor", "aadObjectId": "aad-amara"},
    "recipient": {"id": "28:bot", "name": "Escalation bot"},
    "conversation": {
        "id": "a:personal-amara",
        "conversationType": "personal",
        "tenantID": "tenant-1",
    },
    "text": "escalate help",
}

# Each a change to one field a reference is made from. (Teams' `tenantId` is not one: msrest
# reads only botbuilder's spelling, `tenantID`, so the reference never holds Teams' own.)
CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("service URL", {"serviceUrl": "https://smba.trafficmanager.net/emea/"}),
    ("channel", {"channelId": "webchat"}),
    ("locale", {"locale": "cy-GB"}),
    ("sender's name", {"from": {**BASE["from"], "name": "Amara O."}}),
    ("sender's Entra id", {"from": {**BASE["from"], "aadObjectId": "aad-other"}}),
    ("sender's role", {"from": {**BASE["from"], "role": "user"}}),
    ("bot", {"recipient": {"id": "28:other-bot", "name": "Escalation bot"}}),
    ("conversation", {"conversation": {**BASE["conversation"], "id": "a:personal-2"}}),
    ("tenant", {"conversation": {**BASE["conversation"], "tenantID": "tenant-2"}}),
    ("group flag", {"conversation": {**BASE["conversation"], "isGroup": True}}),
    (
        "conversation's properties",
        {"conversation": {**BASE["conversation"], "properties": {"a": 1}}},
    ),
    ("sender's properties", {"from": {**BASE["from"], "properties": {"a": [1, 2]}}}),
]


def _activity(**changes: Any) -> Activity:
    return Activity().deserialize({**BASE, **changes})


def _reference(activity: Activity) -> dict[str, Any]:
    return from_reference(TurnContext.get_conversation_reference(activity))


def test_the_same_fields_give_the_same_reference_whatever_else_differs() -> None:
    first = _activity()
    # Another message in the same conversation: another id and text, the same reference.
    second = _activity(id="1700000000002", text="escalate list", value={"form": "x"})
    assert seen_in(first) is not None
    assert seen_in(first) == seen_in(second)
    assert _reference(first) == _reference(second)


@pytest.mark.parametrize(("what", "change"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_field_that_changes_the_reference_changes_what_is_seen(
    what: str, change: dict[str, Any]
) -> None:
    base, changed = _activity(), _activity(**change)
    assert _reference(base) != _reference(changed), f"{what} is not in the reference"
    assert seen_in(base) != seen_in(changed)


def test_fields_that_cannot_be_written_down_mean_the_reference_is_compared() -> None:
    activity = _activity()
    activity.conversation.properties = object()  # not JSON: nothing to compare cheaply
    assert seen_in(activity) is None
