"""Server.kick: sending what was just queued at once, without a pass per kick."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import wait_until

from bot.inflight import InFlight
from bot.outbox import DispatchReport
from bot.web import Server


class SlowDispatcher:
    """Counts its passes; each waits until released, like a send to a slow platform."""

    def __init__(self) -> None:
        self.passes = 0
        self.release = asyncio.Event()

    async def run_once(self, limit: int = 100) -> DispatchReport:
        self.passes += 1
        await self.release.wait()
        return DispatchReport()


async def test_kicks_during_a_pass_make_one_more_pass_not_one_each() -> None:
    dispatcher = SlowDispatcher()
    server = Server(core=Any, dispatcher=dispatcher)  # type: ignore[arg-type]
    server.kick()
    await asyncio.sleep(0)  # the first pass starts and waits
    for _ in range(20):
        server.kick()  # twenty clicks while it sends
    assert dispatcher.passes == 1
    dispatcher.release.set()
    await server.settle()
    assert dispatcher.passes == 2  # what those twenty queued went in one more pass
    server.kick()  # later, a kick starts a pass of its own again
    await server.settle()
    assert dispatcher.passes == 3


async def test_a_kick_with_nothing_running_sends_at_once() -> None:
    dispatcher = SlowDispatcher()
    dispatcher.release.set()
    server = Server(core=Any, dispatcher=dispatcher)  # type: ignore[arg-type]
    server.kick()
    await server.settle()
    assert dispatcher.passes == 1


async def test_a_kick_sends_once_the_requests_in_flight_have_their_answers() -> None:
    # Sending is CPU work on the event loop: the request that kicked is answered first.
    dispatcher = SlowDispatcher()
    dispatcher.release.set()
    server = Server(core=Any, dispatcher=dispatcher, inflight=InFlight(patience=60))  # type: ignore[arg-type]
    with server.inflight.request():
        server.kick()
        await wait_until(lambda: server.inflight.held, "the kick to wait", every=0)
        assert dispatcher.passes == 0
    await server.settle()
    assert dispatcher.passes == 1
