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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    """Counts requests being answered; `quiet()` waits until there are none (or a bound)."""

    def __init__(self, patience: float = 0.5, grace: float = 0.002) -> None:
        self.patience = patience
        self.grace = grace
        self.waiting = 0
        self.held = 0  # callers of quiet() still waiting
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._timer: asyncio.TimerHandle | None = None

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count one request from its arrival until its answer is ready to go."""
        self.waiting += 1
        self._quiet.clear()
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
                    self._quiet.set()

    def _calm(self) -> None:
        self._timer = None
        if self.waiting == 0:
            self._quiet.set()

    async def quiet(self) -> bool:
        """Wait until no request has waited for an answer for `grace`; False if out of patience."""
        if self._quiet.is_set():
            return True
        self.held += 1
        try:
            await asyncio.wait_for(self._quiet.wait(), self.patience)
        except TimeoutError:
            # A steady stream of requests must not hold the work back for ever.
            return False
        finally:
            self.held -= 1
        return True
