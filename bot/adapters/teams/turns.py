"""Teams turns run after their activity is answered, each conversation's turns in order.

The Bot Framework service counts from posting an activity to the bot's HTTP answer, and gives
up at 10 to 15 seconds with a GatewayTimeout (and the person sees an error, though the bot may
go on to act). A message activity's answer carries nothing: the bot's replies and card updates
go to the Bot Connector as calls of their own. So, as Slack is acked before the work
(bot/adapters/slack/app.py, `Budget`), an authenticated message is answered 202 Accepted at once
and its turn runs here: after the answers still in flight are given (bot/inflight.py), and
after the earlier turns of the same conversation, so that a person's messages are handled in
the order they were sent. Invokes and `expectReplies` activities, whose answer carries the
result, are not run here.

A turn's failure is the bot's `on_error` (an apology in the chat, a logged error); one that
escapes even that is logged here. Shutdown waits for the turns started (`settle`); a turn cut
off by the shutdown bound is lost, as a Slack listener's work after its ack is: the card the
person pressed is then not updated, and pressing again does what the first press would have.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from bot.inflight import InFlight

log = logging.getLogger(__name__)


class Turns:
    """Background turns: started in arrival order, one at a time per conversation."""

    def __init__(self, inflight: InFlight | None = None) -> None:
        self.inflight = inflight
        self.running: set[asyncio.Task[None]] = set()
        self.escaped = 0  # turns whose failure escaped the bot's on_error (each one logged)
        # Conversation id -> its latest turn, which the next one in that conversation awaits.
        self._last: dict[str, asyncio.Task[None]] = {}

    def start(self, conversation: str, turn: Callable[[], Awaitable[None]]) -> None:
        """Run `turn` once the conversation's earlier turns are done and no answer is waiting."""
        before = self._last.get(conversation)
        task = asyncio.get_running_loop().create_task(self._run(before, turn))
        self._last[conversation] = task
        self.running.add(task)  # a reference until it is done (asyncio's advice)
        task.add_done_callback(partial(self._finished, conversation))

    def _finished(self, conversation: str, task: asyncio.Task[None]) -> None:
        # One callback, not three: this runs for every message.
        self.running.discard(task)
        self._forget(conversation, task)
        self._log_failure(task)

    async def _run(
        self, before: asyncio.Task[None] | None, turn: Callable[[], Awaitable[None]]
    ) -> None:
        if before is not None:
            # Waited for, not awaited: the earlier turn's failure is its own (logged there).
            await asyncio.wait([before])
        if self.inflight is not None:
            await self.inflight.quiet()
        await turn()

    def _forget(self, conversation: str, task: asyncio.Task[None]) -> None:
        if self._last.get(conversation) is task:
            del self._last[conversation]

    async def settle(self) -> None:
        """Wait for every turn started, those they start included (shutdown, and tests)."""
        while self.running:
            await asyncio.gather(*list(self.running), return_exceptions=True)

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.escaped += 1
            log.error(
                "a Teams turn failed after its activity was answered", exc_info=task.exception()
            )
