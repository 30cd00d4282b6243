"""A Bot Framework token checked once is trusted again only for the same header, channel and
service URL, while it is valid and for at most five minutes; a refused one is never kept."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botbuilder.schema import Activity
from botframework.connector.auth import ChannelValidation, JwtTokenValidation
from fakes.bot_connector import FakeBotConnector
from jwt.exceptions import InvalidSignatureError

from bot.adapters.teams import tokens
from bot.adapters.teams.bot import teams_authentication
from bot.adapters.teams.tokens import LIFE, CheckedTokens
from bot.config import Settings

APP_ID = "5f0c1f7e-6b1d-4c2a-9e3f-00000000e5c1"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotConnector]:
    async with FakeBotConnector(app_id=APP_ID) as fake:
        monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", fake.openid_url)
        yield fake


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every full token check botbuilder makes, by service URL."""
    made: list[str] = []
    real = JwtTokenValidation.authenticate_request

    async def counted(activity: Any, auth_header: str, *args: Any, **kwargs: Any) -> Any:
        made.append(activity.service_url)
        return await real(activity, auth_header, *args, **kwargs)

    monkeypatch.setattr(JwtTokenValidation, "authenticate_request", staticmethod(counted))
    return made


def _auth(tmp_path: Path, clock: Clock) -> Any:
    auth = teams_authentication(
        Settings(
            database_url=f"sqlite:///{tmp_path}/x.db",
            microsoft_app_id=APP_ID,
            microsoft_app_password="secret",
        )
    )
    auth.tokens = CheckedTokens(clock=clock)
    return auth


def _activity(service_url: str, channel: str = "msteams") -> Activity:
    return Activity().deserialize(
        {
            "type": "message",
            "id": "1",
            "serviceUrl": service_url,
            "channelId": channel,
            "from": {"id": "29:user"},
            "conversation": {"id": "a:chat"},
            "recipient": {"id": f"28:{APP_ID}"},
            "text": "escalate help",
        }
    )


async def test_the_same_token_is_checked_once_and_gives_the_same_answer(
    fake: FakeBotConnector, checks: list[str], tmp_path: Path
) -> None:
    clock = Clock()
    auth = _auth(tmp_path, clock)
    header = f"Bearer {fake.token()}"
    first = await auth.authenticate_request(_activity(fake.service_url), header)
    clock.now += LIFE - 1
    again = await auth.authenticate_request(_activity(fake.service_url), header)
    assert checks == [fake.service_url]
    assert again is first
    assert first.claims_identity.get_claim_value("aud") == APP_ID
    assert (await first.connector_factory.create(fake.service_url, first.audience)) is (
        await again.connector_factory.create(fake.service_url, again.audience)
    )


async def test_another_service_url_or_channel_is_checked_afresh(
    fake: FakeBotConnector, checks: list[str], tmp_path: Path
) -> None:
    auth = _auth(tmp_path, Clock())
    header = f"Bearer {fake.token()}"
    await auth.authenticate_request(_activity(fake.service_url), header)
    # The token names its service URL: the same token with another is refused, kept or not.
    with pytest.raises(PermissionError):
        await auth.authenticate_request(_activity("https://elsewhere.example/"), header)
    # The signing key is endorsed for Teams only: the same token from another channel is
    # refused too, which it could not be if the first answer were reused for it.
    with pytest.raises(Exception, match="endorsement"):
        await auth.authenticate_request(_activity(fake.service_url, channel="webchat"), header)
    assert checks == [fake.service_url, "https://elsewhere.example/", fake.service_url]
    assert len(auth.tokens) == 1  # the refusals were not kept


async def test_a_refused_token_is_refused_every_time(
    fake: FakeBotConnector, checks: list[str], tmp_path: Path
) -> None:
    auth = _auth(tmp_path, Clock())
    forged = f"Bearer {fake.token(signed_by_someone_else=True)}"
    for _ in range(2):
        with pytest.raises(InvalidSignatureError):
            await auth.authenticate_request(_activity(fake.service_url), forged)
    assert len(checks) == 2 and len(auth.tokens) == 0


async def test_a_kept_answer_lapses_after_five_minutes_and_when_the_token_expires(
    fake: FakeBotConnector, checks: list[str], tmp_path: Path
) -> None:
    clock = Clock()
    auth = _auth(tmp_path, clock)
    header = f"Bearer {fake.token()}"
    await auth.authenticate_request(_activity(fake.service_url), header)
    clock.now += LIFE
    await auth.authenticate_request(_activity(fake.service_url), header)
    assert len(checks) == 2
    # A token that expires sooner is kept only until then: after it, botbuilder decides.
    clock.now = time.time()
    short = f"Bearer {fake.token(expires_in=60)}"
    await auth.authenticate_request(_activity(fake.service_url), short)
    clock.now += 59
    await auth.authenticate_request(_activity(fake.service_url), short)
    assert len(checks) == 3
    clock.now += 2
    await auth.authenticate_request(_activity(fake.service_url), short)  # within its leeway
    assert len(checks) == 4


async def test_no_token_is_never_answered_from_the_kept_checks(
    fake: FakeBotConnector, checks: list[str], tmp_path: Path
) -> None:
    auth = _auth(tmp_path, Clock())
    for _ in range(2):
        with pytest.raises(PermissionError):
            await auth.authenticate_request(_activity(fake.service_url), "")
    assert len(checks) == 2 and len(auth.tokens) == 0


async def test_the_kept_checks_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "KEPT", 3)
    kept = CheckedTokens(clock=Clock())
    made: list[str] = []

    result = SimpleNamespace(claims_identity=SimpleNamespace(claims={"exp": time.time() + 3600}))

    async def check(activity: Any, header: str) -> Any:
        made.append(header)
        return result

    activity = _activity("https://smba.example/")
    for i in range(5):
        await kept.check(activity, f"Bearer {i}", check)
    assert len(kept) == 3
    await kept.check(activity, "Bearer 4", check)  # kept
    await kept.check(activity, "Bearer 0", check)  # the oldest, dropped: checked again
    assert made == ["Bearer 0", "Bearer 1", "Bearer 2", "Bearer 3", "Bearer 4", "Bearer 0"]


async def test_each_fake_connector_publishes_its_keys_at_its_own_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # botbuilder keeps the keys of a metadata address for a day: had a later fake the address
    # of an earlier one (the same port again), its valid tokens would be refused.
    urls = []
    for _ in range(2):
        async with FakeBotConnector(app_id=APP_ID) as fake:
            monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", fake.openid_url)
            auth = _auth(tmp_path, Clock())
            result = await auth.authenticate_request(
                _activity(fake.service_url), f"Bearer {fake.token()}"
            )
            assert result.claims_identity.get_claim_value("aud") == APP_ID
            urls.append(fake.openid_url)
    assert urls[0] != urls[1]
