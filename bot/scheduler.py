"""The tick: an APScheduler job that runs the timekeeper and then the outbox.

The job store is in memory on purpose: nothing about timing lives in the scheduler. Every
timer is derived from the disputes in the database, so a restart (or a second replica) loses
nothing and repeats nothing; the scheduler is only a metronome.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.metrics import Metrics
from bot.outbox import Dispatcher, DispatchReport
from bot.service import Service, TickReport

log = logging.getLogger(__name__)


@dataclass
class Beat:
    """What one tick did: the timekeeper's part and the outbox's part."""

    timers: TickReport
    outbox: DispatchReport


class Timekeeper:
    """Runs the timers and sends the outbox, every `seconds`."""

    def __init__(
        self,
        service: Service,
        dispatcher: Dispatcher,
        seconds: int = 30,
        metrics: Metrics | None = None,
    ) -> None:
        self.service = service
        self.dispatcher = dispatcher
        self.seconds = seconds
        self.metrics = metrics
        self.scheduler: AsyncIOScheduler | None = None
        self.last_beat: datetime | None = None
        self._current: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the tick is scheduled."""
        return self.scheduler is not None and self.scheduler.running

    async def beat(self) -> Beat:
        """One tick: fire what is due, then send what is queued."""
        started = time.perf_counter()
        # The timers' database work runs in a worker thread, so requests are served meanwhile.
        timers = await asyncio.to_thread(self.service.tick)
        sent = await self.dispatcher.run_once()
        if self.metrics is not None:
            self.metrics.observe_tick(timers, sent, time.perf_counter() - started)
        self.last_beat = datetime.now(UTC)
        if timers.fired or sent.sent or sent.parked:
            log.info(
                "tick", extra={"fired": timers.fired, "sent": sent.sent, "parked": sent.parked}
            )
        return Beat(timers, sent)

    async def _safe_beat(self) -> None:
        # A failing tick (the database restarting, say) must not stop the next one.
        self._current = asyncio.current_task()
        try:
            await self.beat()
        except Exception:
            log.exception("tick failed; trying again at the next one")
        finally:
            self._current = None

    def start(self) -> AsyncIOScheduler:
        """Start ticking on the running event loop; the first tick is at once."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._safe_beat,
            "interval",
            seconds=self.seconds,
            id="tick",
            max_instances=1,  # a slow tick is never overlapped by the next
            coalesce=True,  # after a pause, one catch-up tick, not a burst
            next_run_time=datetime.now(UTC),
        )
        scheduler.start()
        self.scheduler = scheduler
        return scheduler

    async def stop(self) -> None:
        """Stop ticking, letting a tick in progress finish (its sends included)."""
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running:
            scheduler.pause()  # no new tick from now on
        current = self._current
        if current is not None and not current.done():
            # Shielded: APScheduler's shutdown cancels running jobs; this one must finish.
            await asyncio.shield(current)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        self.scheduler = None
