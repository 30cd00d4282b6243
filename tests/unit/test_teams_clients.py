"""Teams plumbing the benchmark leans on: msrest's client set-up made cheap without changing
which answers it retries, and the fake Bot Connector's card checks deferred for a benchmark
but never skipped."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from botbuilder.schema import Activity, Attachment
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import ClaimsIdentity
from fakes.bot_connector import CARD, FakeBotConnector
from msrest.authentication import BasicTokenAuthentication
from msrest.exceptions import ValidationError
from msrest.serialization import Model, Serializer
from msrest.universal_http.requests import ClientRetryPolicy

from bot.adapters.teams import cards
from bot.adapters.teams.bot import teams_authentication
from bot.adapters.teams.clients import KEPT, plain_json_objects, unchecked_bodies
from bot.adapters.teams.kept import Kept
from bot.adapters.teams.platform import TeamsPlatform, card_activity, to_reference
from bot.app import Core
from bot.config import Settings

APP_ID = "5f0c1f7e-6b1d-4c2a-9e3f-00000000e5c1"
# msrest 0.7's own definition: every status below 500 but 408, and 501 and 505, is not retried.
NOT_RETRIED = [i for i in range(500) if i != 408] + [501, 505]


def test_building_the_teams_authentication_keeps_msrests_retry_codes_and_makes_clients_cheap(
    tmp_path: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        microsoft_app_id=APP_ID,
        microsoft_app_password="secret",
    )
    teams_authentication(settings)
    policy = ClientRetryPolicy()
    assert policy.policy.status_forcelist == [i for i in range(999) if i not in NOT_RETRIED]
    assert 408 in policy.policy.status_forcelist and 429 not in policy.policy.status_forcelist
    # Searched 999 times for each client: as a list that took 5 ms of CPU, as a set almost none.
    assert isinstance(ClientRetryPolicy.safe_codes, frozenset)


def _bad_card_activity() -> dict[str, object]:
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "NoSuchElement"}]}
    return {"type": "message", "attachments": [{"contentType": CARD, "content": card}]}


@pytest.mark.parametrize("later", [False, True])
async def test_the_fake_connector_finds_a_bad_card_now_or_when_asked(later: bool) -> None:
    async with FakeBotConnector(app_id=APP_ID, check_cards_later=later) as fake:
        async with aiohttp.ClientSession() as http:
            response = await http.post(
                f"{fake.service_url}v3/conversations/a:chat/activities",
                json=_bad_card_activity(),
                headers={"Authorization": f"Bearer {fake.bot_token}"},
            )
        if later:
            assert response.status == 201 and fake.violations == []
            problems = fake.check_cards()
            assert problems and problems == fake.violations
            assert fake.check_cards() == []  # each card is checked once
        else:
            assert response.status == 400 and fake.violations
            assert fake.check_cards() == []


async def test_the_fake_connector_checks_cards_in_worker_processes_alike() -> None:
    good = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Hi"}]}
    activities = [
        {"type": "message", "attachments": [{"contentType": CARD, "content": good}]},
        _bad_card_activity(),
        _bad_card_activity(),  # the same card twice: reported for each, checked once
    ]
    async with FakeBotConnector(app_id=APP_ID, check_cards_later=True) as fake:
        async with aiohttp.ClientSession() as http:
            for i, body in enumerate(activities):
                response = await http.post(
                    f"{fake.service_url}v3/conversations/a:chat{i}/activities",
                    json=body,
                    headers={"Authorization": f"Bearer {fake.bot_token}"},
                )
                assert response.status == 201
        problems = await asyncio.to_thread(fake.check_cards, 2)
    assert len(problems) == 2 and problems == fake.violations
    assert [p.split(":")[1] for p in problems] == ["chat1", "chat2"]


async def test_kept_clients_are_built_once_per_key_and_bounded() -> None:
    kept: Kept[tuple[str, ...], object] = Kept(KEPT)
    built: list[str] = []

    async def build(key: str) -> object:
        built.append(key)
        return object()

    first = await kept.get_or_build(("a",), lambda: build("a"))
    assert await kept.get_or_build(("a",), lambda: build("a")) is first
    assert built == ["a"]
    for i in range(KEPT):
        await kept.get_or_build((str(i),), lambda i=i: build(str(i)))  # type: ignore[misc]
    assert len(kept) == KEPT  # "a", the least recently used, made room
    again = await kept.get_or_build(("a",), lambda: build("a"))
    assert again is not first and built.count("a") == 2


def test_cards_serialise_exactly_as_msrest_would(core: Core) -> None:
    # The intake form (the largest card) and a submit's value, through the client's fast path
    # and through msrest's own serializer: the same JSON.
    runner = core.conversations.resume(
        "t:1", core.service.directory.person("amara.okafor"), display_name="Amara Okafor"
    )
    card = cards.flow_card(runner, title="Log a disagreement", submit_title="Log it", data={})
    activity = Activity(
        type="message",
        text="Log a disagreement",
        attachments=[Attachment(content_type=CARD, content=card)],
        value={"form": "intake", "shown": ["scope"], "count": 3, "ok": True, "none": None},
        channel_data={"at": datetime(2026, 11, 26, 10, 0, tzinfo=UTC)},  # not plain JSON
    )
    client = ConnectorClient(BasicTokenAuthentication({"access_token": "t"}), "http://x/")
    stock = Serializer(dict(client._serialize.dependencies)).body(activity, "Activity")
    plain_json_objects(client)
    assert client._serialize.serialize_type["object"] != client._serialize.serialize_object
    assert client._serialize.body(activity, "Activity") == stock
    assert unchecked_bodies(client) and not client._serialize.client_side_validation
    assert client._serialize.body(activity, "Activity") == stock
    assert stock["attachments"][0]["content"] == card
    assert stock["channelData"]["at"] == "2026-11-26T10:00:00.000Z"


def test_a_card_on_its_way_out_is_shared_by_botbuilders_copy_not_copied(core: Core) -> None:
    runner = core.conversations.resume("t:1", None, display_name="Sam Stranger")
    card = cards.flow_card(runner, title="Log a disagreement", submit_title="Log it", data={})
    activity = card_activity(card, "Log a disagreement")
    copied = copy.deepcopy(activity)  # what TurnContext.send_activities does to each activity
    assert copied is not activity and copied.attachments[0] is not activity.attachments[0]
    assert copied.attachments[0].content is activity.attachments[0].content
    client = ConnectorClient(BasicTokenAuthentication({"access_token": "t"}), "http://x/")
    plain_json_objects(client)
    body = client._serialize.body(copied, "Activity")
    sent = body["attachments"][0]["content"]
    # Put in the body as it is: neither walked by msrest nor copied through json.
    assert sent is activity.attachments[0].content and sent == card
    # The same JSON as msrest's own for the card as a plain dict (msrest itself would write a
    # dict subclass as a string: only this client's serialiser may be given a SentCard).
    plain = Activity(
        type="message", attachments=[Attachment(content_type=CARD, content=dict(card))]
    )
    plain.summary = activity.summary
    stock = Serializer(dict(client._serialize.dependencies)).body(plain, "Activity")
    assert json.loads(json.dumps(body)) == stock


def test_bodies_stay_checked_when_a_model_declares_a_rule() -> None:
    client = ConnectorClient(BasicTokenAuthentication({"access_token": "t"}), "http://x/")

    class Ruled(Model):  # a model as a later botbuilder might declare one
        _validation = {"id": {"required": True}}  # noqa: RUF012 (as msrest declares it)
        _attribute_map = {"id": {"key": "id", "type": "str"}}  # noqa: RUF012

        def __init__(self, id: str | None = None) -> None:
            super().__init__()
            self.id = id

    client._serialize.dependencies["Ruled"] = Ruled
    assert not unchecked_bodies(client)
    assert client._serialize.client_side_validation
    with pytest.raises(ValidationError):
        client._serialize.body(Ruled(), "Ruled")  # the check still catches what it is for


async def test_the_kept_connector_clients_skip_the_empty_check(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db",
        microsoft_app_id=APP_ID,
        microsoft_app_password="secret",
    )
    auth = teams_authentication(settings)
    identity = ClaimsIdentity({"aud": APP_ID, "appid": APP_ID}, True)
    factory = auth.create_connector_factory(identity)
    client = await factory.create("http://127.0.0.1:9/", None)
    assert client._serialize.client_side_validation is False
    assert await factory.create("http://127.0.0.1:9/", None) is client


def test_a_client_whose_msrest_cannot_take_sent_cards_is_refused() -> None:
    # Stock msrest writes a dict subclass as a string: such a client would send broken cards.
    client = ConnectorClient(BasicTokenAuthentication({"access_token": "t"}), "http://x/")
    del client._serialize.serialize_type["object"]
    with pytest.raises(RuntimeError, match="msrest"):
        plain_json_objects(client)


async def test_a_proactive_send_continues_from_a_copy_without_the_activity_id() -> None:
    # The adapter gets the reference without an activity id (a proactive message starts
    # afresh, not as a reply), and the caller's reference is left as it was.
    reference = to_reference(
        {
            "activityId": "1700000000001",
            "user": {"id": "29:ben", "name": "Ben Carter", "aadObjectId": "aad-ben"},
            "bot": {"id": "28:bot", "name": "Escalation bot"},
            "conversation": {"id": "a:personal-29:ben", "conversationType": "personal"},
            "channelId": "msteams",
            "serviceUrl": "http://127.0.0.1:9/",
        }
    )
    continued: list[Any] = []

    class Adapter:
        async def continue_conversation(self, ref: Any, callback: Any, app_id: str) -> None:
            continued.append((ref, app_id))

    platform = SimpleNamespace(adapter=Adapter(), app_id="app-id")
    await TeamsPlatform._continue(platform, reference, None, {})  # type: ignore[arg-type]
    ((sent, app_id),) = continued
    assert app_id == "app-id" and sent is not reference
    assert sent.activity_id is None and reference.activity_id == "1700000000001"
    assert sent.serialize() == {k: v for k, v in reference.serialize().items() if k != "activityId"}
