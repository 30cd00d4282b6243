"""Platform requests still waiting for their answer, so that work done after an answer waits too.

Slack's clock stops at the answer (the ack); opening a modal or updating a message after it
is work the person waits for, but Slack does not. That work is CPU-heavy Python on worker
threads, and a thread holding the GIL delays the event loop by up to the interpreter's switch
interval (5 ms) every time the loop wants it back. Started while other requests are still
being answered, it made their answers late: a round of twenty `/escalate`s answered in up to
160 ms rather than 20. So such work first waits, for at most `patience`, until no request is
waiting for its answer. See BENCHMARKS.md, benchmark 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class InFlight:
    """Counts requests being answered; `quiet()` waits until there are none (or a bound)."""

    def __init__(self, patience: float = 0.5) -> None:
        self.patience = patience
        self.waiting = 0
        self.held = 0  # callers of quiet() still waiting
        self._quiet = asyncio.Event()
        self._quiet.set()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count one request from its arrival until its answer is ready to go."""
        self.waiting += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self.waiting -= 1
            if self.waiting == 0:
                self._quiet.set()

    async def quiet(self) -> bool:
        """Wait until no request is waiting for its answer; False if `patience` ran out first."""
        if self.waiting == 0:
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
