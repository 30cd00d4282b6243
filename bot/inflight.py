"""Platform requests still waiting for their answer, so that work done after an answer waits too.

Slack's clock stops at the answer (the ack); opening a modal or updating a message after it
is work the person waits for, but Slack does not. That work is CPU-heavy Python on worker
threads, and a thread holding the GIL delays the event loop by up to the interpreter's switch
interval (5 ms) every time the loop wants it back. Started while other requests are still
being answered, it made their answers late: a round of twenty `/escalate`s answered in up to
160 ms rather than 20. So such work first waits, for at most `patience`, until no request is
waiting for its answer. See BENCHMARKS.md, benchmark 1.

"Answered" means written: the web server's middleware writes the answer before the request
stops counting (bot/web.py). Counted only until the handler returned, work could start before
aiohttp wrote the answer, and one `/escalate` in thirty waited 5 ms more for it. And quiet
means quiet for `grace` (2 ms) after the last answer: the requests of a burst do not all
arrive at once, and work started in a gap between them held up the answers to the rest.

Each request's own bookkeeping (its log line, its metrics) waits for quiet too (`defer`): a
few tens of microseconds each, they added up between the answers of a burst.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class InFlight:
    """Counts requests being answered; `quiet()` waits until there are none (or a bound)."""

    def __init__(self, patience: float = 0.5, grace: float = 0.002) -> None:
        self.patience = patience
        self.grace = grace
        self.waiting = 0
        self.held = 0  # callers of quiet() still waiting
        self._is_quiet = True
        self._timer: asyncio.TimerHandle | None = None
        # Callers waiting for quiet, and one bound on their wait for the whole busy spell:
        # every request's listener waits here, and a timer each cost the event loop more
        # than the wait itself.
        self._waiters: list[asyncio.Future[bool]] = []
        self._out_of_patience: asyncio.TimerHandle | None = None
        self._deferred: list[Callable[[], None]] = []
        self._flusher: asyncio.Task[None] | None = None

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count one request from its arrival until its answer is ready to go."""
        self.waiting += 1
        self._is_quiet = False
        if self._timer is not None:
            self._timer.cancel()  # the burst goes on
            self._timer = None
        try:
            yield
        finally:
            self.waiting -= 1
            if self.waiting == 0:
                if self.grace > 0:
                    self._timer = asyncio.get_running_loop().call_later(self.grace, self._calm)
                else:
                    self._calm()

    def _calm(self) -> None:
        self._timer = None
        if self.waiting == 0:
            self._is_quiet = True
            self._release(True)

    def _release(self, quiet: bool) -> None:
        """Let every waiter go: True when quiet came, False when patience ran out first."""
        if self._out_of_patience is not None:
            self._out_of_patience.cancel()
            self._out_of_patience = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # not cancelled meanwhile
                waiter.set_result(quiet)

    async def quiet(self) -> bool:
        """Wait until no request has waited for an answer for `grace`; False if out of patience.

        Patience is counted from the first caller of a busy spell: a steady stream of requests
        must not hold the work back for ever, and what waits is let go together.
        """
        if self._is_quiet:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        if self._out_of_patience is None:
            self._out_of_patience = loop.call_later(self.patience, self._release, False)
        self.held += 1
        try:
            return await waiter
        finally:
            self.held -= 1

    def defer(self, work: Callable[[], None]) -> None:
        """Do `work`, quick bookkeeping (a request's log line, its metrics), once quiet.

        Each is tens of microseconds; twenty at once, done between answers, are a millisecond
        more for the last of a burst to wait for its answer.
        """
        self._deferred.append(work)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_when_quiet())

    async def _flush_when_quiet(self) -> None:
        try:
            await self.quiet()
        finally:
            self._flusher = None
            self.flush()

    def flush(self) -> None:
        """Do the deferred bookkeeping now (shutdown, and the metrics page), in order."""
        work, self._deferred = self._deferred, []
        for item in work:
            try:
                item()
            except Exception:  # bookkeeping must never take the rest with it
                log.exception("deferred bookkeeping failed")
