"""The dispatcher: sends saved messages through each recipient's platform, with retries.

Messages were saved in the same transaction as their cause. The dispatcher claims a batch
with a short lease (one quick transaction; SKIP LOCKED on PostgreSQL so replicas share the
work), sends each outside any transaction, and records the result in another quick one. A
sender killed mid-way leaves its claims to lapse; whoever claims them next tells the platform
the message may already have arrived, so it can avoid showing it twice.

Every database step runs in a worker thread, never on the event loop: on SQLite a step may
wait for another writer's lock, and a wait on the loop held up every Slack request with it
(past Slack's 3 seconds, under load: tests/integration/test_load.py).

Within a dispute's channel thread, order holds: nothing is sent after a channel message of
the same dispute that has not gone yet (the thread root first). After MAX_ATTEMPTS, or at
once for a permanent failure, a message is parked and the partnership admins are told.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.adapters.base import Platform, SendFailed
from bot.clock import Clock
from bot.messages import Message, Recipient
from store.repository import ClaimedMessage, Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=5)
MAX_DELAY = timedelta(hours=1)
LEASE = timedelta(minutes=2)
ALERT_PREFIX = "alert:"


@dataclass
class DispatchReport:
    """What one pass of the dispatcher did."""

    sent: int = 0
    retried: int = 0
    parked: int = 0
    deferred: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (platform, reason)


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait before the next try: Retry-After if the platform gave one."""
    if retry_after is not None:
        return timedelta(seconds=max(retry_after, 0.0))
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


class Dispatcher:
    """Claims pending messages and sends them."""

    def __init__(
        self,
        store: Store,
        platforms: Sequence[Platform],
        clock: Clock,
        *,
        admins: Callable[[], list[str]] = list,
        worker: str | None = None,
    ) -> None:
        self.store = store
        self.platforms = list(platforms)
        self.clock = clock
        self.admins = admins
        self.worker = worker or f"dispatcher-{uuid.uuid4().hex[:12]}"

    def platform_for(self, message: Message) -> Platform | None:
        """The first platform that can reach the recipient (the named one, if it is pinned)."""
        candidates = [p for p in self.platforms if message.platform in (None, p.name)]
        return next((p for p in candidates if p.can_reach(message)), None)

    async def run_once(self, limit: int = 100) -> DispatchReport:
        """Claim what is due now and send it, in order."""
        report = DispatchReport()
        now = self.clock.now()
        batch = await asyncio.to_thread(self._claim, now, limit)
        for claimed in batch:
            await self._send_one(claimed, report)
        return report

    def _claim(self, now: datetime, limit: int) -> list[ClaimedMessage]:
        with self.store.unit() as session:
            return self.store.claim_messages(
                session, now=now, lease=LEASE, worker=self.worker, limit=limit
            )

    async def _send_one(self, claimed: ClaimedMessage, report: DispatchReport) -> None:
        message = claimed.message
        now = self.clock.now()
        platform = self.platform_for(message)
        ready, thread_id = await asyncio.to_thread(self._prepare, claimed, platform, now)
        if not ready:
            report.deferred += 1
            return
        if platform is None:
            await asyncio.to_thread(
                self._park, claimed, "no platform can reach this recipient", report
            )
            return
        if claimed.attempts >= MAX_ATTEMPTS:
            # Every try so far ended with no outcome recorded: its sender died each time (this
            # message may be what kills it). Attempts are counted at the claim for this.
            reason = f"no sender survived {claimed.attempts} tries"
            await asyncio.to_thread(self._park, claimed, reason, report)
            return
        try:
            delivered = await platform.send(
                message, thread_id=thread_id, maybe_sent=claimed.maybe_sent
            )
        except Exception as exc:
            # An adapter's unexpected error is a failed send like any other: it must not end
            # the pass and leave the rest of the batch claimed until the lease lapses.
            if not isinstance(exc, SendFailed):
                log.exception("platform %s failed unexpectedly", platform.name)
                exc = SendFailed(f"unexpected error: {exc!r}")
            report.failures.append((platform.name, exc.reason[:80]))
            attempts = claimed.attempts + 1
            if exc.permanent or attempts >= MAX_ATTEMPTS:
                await asyncio.to_thread(self._park, claimed, exc.reason, report)
                return
            retry_at = now + backoff(attempts, exc.retry_after)
            await asyncio.to_thread(self._retry_later, claimed, now, retry_at, exc.reason)
            report.retried += 1
            log.info("send failed; will retry", extra={"ref": message.ref, "reason": exc.reason})
            return
        if not await asyncio.to_thread(
            self._sent, claimed, platform, delivered.thread_id, thread_id, now
        ):
            log.warning("lost the claim on a message while sending it", extra={"ref": message.ref})
            return
        report.sent += 1

    def _prepare(
        self, claimed: ClaimedMessage, platform: Platform | None, now: datetime
    ) -> tuple[bool, str | None]:
        """Whether to send now (not behind an earlier unsent thread message), and its thread."""
        # Read without the write lock: almost every message may go at once, and on SQLite a
        # writing unit would queue behind every click and tick for a lookup.
        with self.store.reading() as session:
            if self.store.earlier_unsent_in_thread(session, claimed) is None:
                return True, self._thread_id(session, claimed.message, platform)
        with self.store.unit() as session:
            # Asked again with the lock, since the earlier message may have gone meanwhile.
            earlier_due = self.store.earlier_unsent_in_thread(session, claimed)
            if earlier_due is not None:
                # Keep the thread in order: try again when the earlier message is next tried.
                self.store.finish_message(
                    session,
                    claimed.id,
                    worker=self.worker,
                    status="pending",
                    now=now,
                    retry_at=max(earlier_due, now),
                    attempted=False,
                )
                return False, None
            return True, self._thread_id(session, claimed.message, platform)

    def _retry_later(
        self, claimed: ClaimedMessage, now: datetime, retry_at: datetime, error: str
    ) -> None:
        with self.store.unit() as session:
            self.store.finish_message(
                session,
                claimed.id,
                worker=self.worker,
                status="pending",
                now=now,
                retry_at=retry_at,
                error=error,
            )

    def _sent(
        self,
        claimed: ClaimedMessage,
        platform: Platform,
        delivered_thread: str | None,
        thread_id: str | None,
        now: datetime,
    ) -> bool:
        """Record a message as sent (False if its claim was lost), and a new thread's root."""
        message = claimed.message
        with self.store.unit() as session:
            if not self.store.finish_message(
                session, claimed.id, worker=self.worker, status="sent", now=now
            ):
                return False
            if message.kind == "thread_root" and delivered_thread and thread_id is None:
                assert message.ref is not None
                self.store.save_thread_root(
                    session, message.ref, platform.name, message.recipient.id, delivered_thread
                )
        return True

    def _thread_id(
        self, session: Session, message: Message, platform: Platform | None
    ) -> str | None:
        """The thread to post in: the dispute's root on this platform, for channel posts."""
        if platform is None or not message.ref or message.recipient.kind != "channel":
            return None
        if message.kind not in ("thread", "thread_root"):
            return None
        return self.store.thread_root(session, message.ref, platform.name)

    def _park(self, claimed: ClaimedMessage, reason: str, report: DispatchReport) -> None:
        """Stop trying, and tell the partnership admins (unless this was such an alert)."""
        message = claimed.message
        now = self.clock.now()
        alerts: list[Message] = []
        if not message.key.startswith(ALERT_PREFIX):
            who = (
                f"the #{message.recipient.id} channel"
                if message.recipient.kind == "channel"
                else message.recipient.id
            )
            about = f" about {message.ref}" if message.ref else ""
            alerts = [
                Message(
                    Recipient.person(admin),
                    f"A message for {who}{about} could not be delivered ({reason[:200]}). It has "
                    "been set aside; please check that person's or channel's platform details.",
                    ref=message.ref,
                    kind="direct",
                    key=f"{ALERT_PREFIX}{claimed.id}:{admin}",
                )
                for admin in self.admins()
            ]
        with self.store.unit() as session:
            if self.store.finish_message(
                session, claimed.id, worker=self.worker, status="parked", now=now, error=reason
            ):
                self.store.enqueue(session, alerts, now=now)
        report.parked += 1
        log.warning("message parked", extra={"ref": message.ref, "reason": reason})
