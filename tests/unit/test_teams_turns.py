"""Teams turns after the answer: in order within a conversation, after the answers in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from bot.adapters.teams.turns import Turns
from bot.inflight import InFlight


class Script:
    """Turns that record when they start and finish, each waiting for its own go-ahead."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.go: dict[str, asyncio.Event] = {}

    def turn(self, name: str, *, fail: bool = False) -> Callable[[], Awaitable[None]]:
        self.go[name] = asyncio.Event()

        async def run() -> None:
            self.log.append(f"start {name}")
            await self.go[name].wait()
            self.log.append(f"end {name}")
            if fail:
                raise RuntimeError(f"{name} broke")

        return run


async def spin(times: int = 5) -> None:
    """Let every task that can run, run (none of these turns waits on anything outside)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def test_a_conversations_turns_run_one_after_another_in_arrival_order() -> None:
    turns, script = Turns(), Script()
    turns.start("chat-a", script.turn("a1"))
    turns.start("chat-a", script.turn("a2"))
    turns.start("chat-b", script.turn("b1"))
    await spin()
    # a2 waits for a1; another conversation's turn does not wait for either.
    assert script.log == ["start a1", "start b1"]
    script.go["a2"].set()  # ready early: it still waits for a1
    await spin()
    assert "start a2" not in script.log
    script.go["a1"].set()
    await spin()
    assert script.log[2:] == ["end a1", "start a2", "end a2"]
    script.go["b1"].set()
    await turns.settle()
    assert not turns.running and turns.escaped == 0


async def test_turns_wait_until_no_answer_is_in_flight() -> None:
    inflight = InFlight(patience=60)
    turns, script = Turns(inflight), Script()
    with inflight.request():
        turns.start("chat-a", script.turn("a1"))
        await spin()
        assert script.log == [], "the turn ran before the answer in flight was given"
    script.go["a1"].set()
    await turns.settle()
    assert script.log == ["start a1", "end a1"]


async def test_a_failed_turn_is_logged_counted_and_does_not_stop_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    turns, script = Turns(), Script()
    turns.start("chat-a", script.turn("a1", fail=True))
    turns.start("chat-a", script.turn("a2"))
    script.go["a1"].set()
    script.go["a2"].set()
    with caplog.at_level(logging.ERROR, logger="bot.adapters.teams.turns"):
        await turns.settle()
    assert script.log == ["start a1", "end a1", "start a2", "end a2"]
    assert turns.escaped == 1
    (record,) = caplog.records
    assert "failed after its activity was answered" in record.getMessage()
    assert record.exc_info is not None and "a1 broke" in str(record.exc_info[1])


async def test_settle_waits_for_turns_started_while_settling() -> None:
    turns, script = Turns(), Script()
    turns.start("chat-a", script.turn("a1"))
    settling = asyncio.create_task(turns.settle())
    await spin()
    turns.start("chat-b", script.turn("b1"))  # arrives while shutdown waits
    script.go["a1"].set()
    await spin()
    assert not settling.done(), "settle returned with b1 still running"
    script.go["b1"].set()
    await settling
    assert script.log == ["start a1", "start b1", "end a1", "end b1"]


async def test_a_finished_conversation_is_forgotten() -> None:
    turns, script = Turns(), Script()
    for name in ("a1", "a2"):
        turns.start("chat-a", script.turn(name))
        script.go[name].set()
    await turns.settle()
    assert turns._last == {}  # no table growing with every conversation ever seen
