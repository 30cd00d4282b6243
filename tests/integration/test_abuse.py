"""Someone firing /escalate fifty times a minute is slowed, kindly and privately, on the bot's
own (simulated) clock; everyone else carries on, and the pause ends by itself."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from slackbot import slack_bot, slack_id_of

from bot.clock import FakeClock

AMARA, BEN = slack_id_of("amara.okafor"), slack_id_of("ben.carter")


async def test_fifty_escalates_in_a_minute_are_slowed_with_a_friendly_private_message(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with slack_bot(tmp_path, clock, monkeypatch) as bot:
        before = bot.row_counts()
        slowed: list[str] = []
        for n in range(50):  # one every 1.2 s: fifty in a minute
            response = await bot.command("", user=AMARA, trigger=f"T{n}")
            assert response.status == 200
            text = await response.text()
            if text:
                answer = await response.json()
                assert answer["response_type"] == "ephemeral"
                slowed.append(answer["text"])
            clock.advance(timedelta(seconds=1.2))
        await bot.deliver()
        opened = len(bot.api.calls_to("views.open"))
        # The default: 10 at once, then one every 6 s (10 a minute) over the 60 s.
        assert opened == 10 + 9 and len(slowed) == 50 - opened
        assert all("try again in" in said and "seconds" in said for said in slowed)
        assert all("nothing you've already logged is affected" in said for said in slowed)
        # Slowing someone writes nothing (they were only remembered, on their first command).
        after = bot.row_counts()
        assert {k: v for k, v in after.items() if v != before[k]} == {"people_seen": 1}
        # Someone else is not held up by it.
        assert (await bot.command("", user=BEN, trigger="TB")).status == 200
        assert len(bot.api.calls_to("views.open")) == opened + 1
        # A minute's pause, and Amara may go again.
        clock.advance(timedelta(minutes=1))
        assert await (await bot.command("", user=AMARA, trigger="TA")).text() == ""
        assert len(bot.api.calls_to("views.open")) == opened + 2


async def test_the_limit_is_set_in_the_settings(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with slack_bot(
        tmp_path, clock, monkeypatch, command_rate_per_minute=2, command_burst=1
    ) as bot:
        first = await bot.command("help", user=AMARA)
        assert "Commands" in (await first.json())["text"]
        second = await (await bot.command("help", user=AMARA)).json()
        assert "try again in 30 seconds" in second["text"]
        clock.advance(timedelta(seconds=30))
        assert "Commands" in (await (await bot.command("help", user=AMARA)).json())["text"]
