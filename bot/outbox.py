"""The dispatcher: sends saved messages through each recipient's platform, with retries.

Messages were saved in the same transaction as their cause; this sends them after commit, in
order, at least once, with the idempotency key stopping duplicates. Imports the store.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from bot.adapters.base import Platform, SendFailed
from bot.clock import Clock
from bot.messages import Message
from store.models import OutboxRow, ThreadRow
from store.repository import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=5)
MAX_DELAY = timedelta(hours=1)


@dataclass
class DispatchReport:
    """What one pass of the dispatcher did."""

    sent: int = 0
    retried: int = 0
    parked: int = 0


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait before the next try: Retry-After if the platform gave one."""
    if retry_after is not None:
        return timedelta(seconds=max(retry_after, 0.0))
    return min(BASE_DELAY * (2 ** max(attempts - 1, 0)), MAX_DELAY)


class Dispatcher:
    """Claims pending messages and sends them."""

    def __init__(self, store: Store, platforms: Sequence[Platform], clock: Clock) -> None:
        self.store = store
        self.platforms = list(platforms)
        self.clock = clock

    def platform_for(self, message: Message) -> Platform | None:
        """The first platform that can reach the recipient."""
        return next((p for p in self.platforms if p.can_reach(message)), None)

    async def run_once(self, limit: int = 100) -> DispatchReport:
        """Send what is due now; each message is claimed, sent and marked in its own transaction."""
        report = DispatchReport()
        now = self.clock.now()
        with self.store.unit() as session:
            ids = [row.id for row in self.store.pending_messages(session, now=now, limit=limit)]
        blocked: set[str] = set()
        for row_id in ids:
            await self._send_one(row_id, report, blocked)
        return report

    async def _send_one(self, row_id: int, report: DispatchReport, blocked: set[str]) -> None:
        now = self.clock.now()
        with self.store.unit() as session:
            query = select(OutboxRow).where(OutboxRow.id == row_id, OutboxRow.status == "pending")
            if self.store.is_postgres:
                query = query.with_for_update(skip_locked=True)
            row = session.execute(query).scalar_one_or_none()
            if row is None:
                return  # another replica has it, or it was sent meanwhile
            message = Message.from_data(row.payload)
            platform = self.platform_for(message)
            thread_key = f"{message.ref}:{platform.name if platform else '-'}"
            if message.ref and thread_key in blocked:
                return  # keep a thread in order: nothing after a message that failed
            if platform is None:
                row.status = "undeliverable"
                row.last_error = "no platform can reach this recipient"
                return
            thread_id = None
            if (
                message.ref
                and message.kind in ("thread", "thread_root")
                and message.recipient.kind == "channel"
            ):
                thread = session.execute(
                    select(ThreadRow).where(
                        ThreadRow.dispute_ref == message.ref, ThreadRow.platform == platform.name
                    )
                ).scalar_one_or_none()
                thread_id = thread.root_id if thread else None
            try:
                delivered = await platform.send(message, thread_id=thread_id)
            except SendFailed as exc:
                row.attempts += 1
                row.last_error = exc.reason[:500]
                if exc.permanent or row.attempts >= MAX_ATTEMPTS:
                    row.status = "parked"
                    report.parked += 1
                    log.warning("message parked", extra={"ref": message.ref, "reason": exc.reason})
                else:
                    row.next_attempt_at = now + backoff(row.attempts, exc.retry_after)
                    report.retried += 1
                if message.ref:
                    blocked.add(thread_key)
                return
            row.status = "sent"
            row.sent_at = now
            row.attempts += 1
            report.sent += 1
            if (
                message.kind == "thread_root"
                and delivered.thread_id
                and thread_id is None
                and message.ref
            ):
                session.add(
                    ThreadRow(
                        dispute_ref=message.ref,
                        platform=platform.name,
                        channel=message.recipient.id,
                        root_id=delivered.thread_id,
                    )
                )
