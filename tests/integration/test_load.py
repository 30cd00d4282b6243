"""Load, bounded: 50 simulated people at once on 127.0.0.1, each opening disputes through the
/escalate modal, acknowledging the ones raised against them and escalating their own, through
the Slack HTTP endpoint against the fake Slack Web API. Then every dispute and event is
checked: none lost, none doubled, every audit chain intact, every request answered.

How fast is not asserted here: on a shared machine that is noise, not behaviour. That Slack is
answered inside its 3 seconds however slow the work is is tested deterministically in
test_slack.py (a database held up on purpose); the latencies are measured by `make bench`
(BENCHMARKS.md), and printed here, with those over Slack's limit counted.

About 20 s by default. LOAD_SECONDS=60 runs it for a minute; LOAD_USERS changes the crowd.
The figures (requests, p50/p99 latency, throughput) are printed: run with `-s` to see them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from slackbot import SlackBot, intake_values, select_, slack_bot, slack_id_of, text
from sqlalchemy import select

from bot.clock import FakeClock
from store.models import DisputeRow, OutboxRow
from store.repository import GENESIS, event_hash

SECONDS = float(os.environ.get("LOAD_SECONDS", "10"))
USERS = int(os.environ.get("LOAD_USERS", "50"))
# A person takes a moment between one click and the next (reading, typing): on average
# THINK seconds, spread from half to one and a half times that. 0 sends back to back.
THINK = float(os.environ.get("LOAD_THINK", "2"))
SLACK_LIMIT = 3.0  # seconds: Slack shows the person an error after this


def crowd() -> list[dict[str, Any]]:
    """USERS practitioners, half in children's social care and half at the hospital trust."""
    people = []
    for i in range(USERS):
        council = i % 2 == 0
        people.append(
            {
                "id": f"load.user{i:03d}",
                "name": f"Load User {i:03d}",
                "agency": "cwc-childrens" if council else "rwt",
                "title": "Practitioner",
                "roles": ["practitioner"],
                "manager": "tom.hadley" if council else "rosa.delgado",
                "email": f"load.user{i:03d}@example.org",
            }
        )
    return people


def partner(i: int) -> int:
    """Each person disagrees with one in the other agency, and hears from them in turn."""
    return i + 1 if i % 2 == 0 else i - 1


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    slow: list[tuple[str, float]] = field(default_factory=list)
    cycles: list[tuple[str, str]] = field(default_factory=list)  # (case ref, dispute ref) done
    triggers: int = 0

    async def timed(self, what: str, request: Any) -> Any:
        started = time.perf_counter()
        response = await request
        body = await response.read()
        elapsed = time.perf_counter() - started
        self.latencies.append(elapsed)
        self.statuses[response.status] += 1
        if elapsed >= SLACK_LIMIT:
            self.slow.append((what, elapsed))
        assert response.status == 200, (what, response.status, body[:200])
        return body

    def trigger(self) -> str:
        self.triggers += 1
        return f"TLOAD{self.triggers}"


def ref_of(bot: SlackBot, case_ref: str) -> str | None:
    case = DisputeRow.state["details"]["case_ref"].as_string()
    with bot.core.store.unit() as session:
        found = session.execute(select(DisputeRow.ref).where(case == case_ref)).scalars().all()
    assert len(found) <= 1, f"{case_ref} was logged {len(found)} times"
    return found[0] if found else None


async def person(bot: SlackBot, tally: Tally, i: int, end: float) -> None:
    """One person's minute: log a disagreement, the other side acknowledges, escalate it."""
    me, them = slack_id_of(f"load.user{i:03d}"), slack_id_of(f"load.user{partner(i):03d}")
    other_agency = "rwt" if i % 2 == 0 else "cwc-childrens"
    pace = random.Random(i)

    async def think() -> None:
        # Pacing between a person's requests, not a wait for any deadline or for the bot.
        await asyncio.sleep(THINK * pace.uniform(0.5, 1.5))

    await asyncio.sleep(THINK * pace.random())  # people arrive over a few seconds
    n = 0
    while n == 0 or time.monotonic() < end:
        n += 1
        case_ref = f"LOAD-{i:03d}-{n:03d}"
        await tally.timed("/escalate", bot.command("", user=me, trigger=tally.trigger()))
        await think()
        values = intake_values(
            other_agency=select_(other_agency),
            other_person=select_(f"load.user{partner(i):03d}"),
            case_ref=text(case_ref),
        )
        submitted = bot.submit("intake", values, user_id=me, view_id=f"VL{i:03d}{n:03d}")
        assert await tally.timed("submit intake", submitted) == b""
        ref = await asyncio.to_thread(ref_of, bot, case_ref)
        if ref is None:  # answered within Slack's time, logged just after: wait for it
            await bot.server.budget.settle()
            ref = await asyncio.to_thread(ref_of, bot, case_ref)
        assert ref is not None, f"{case_ref} was lost"
        await think()
        await tally.timed(
            "acknowledge", bot.click("acknowledge", ref, them, trigger_id=tally.trigger())
        )
        await think()
        await tally.timed("escalate", bot.click("escalate", ref, me, trigger_id=tally.trigger()))
        await think()
        reason = {"reason": text("No agreement between the practitioners.")}
        metadata = json.dumps({"ref": ref, "stage": 1})
        form = bot.submit(
            "action:escalate",
            reason,
            user_id=me,
            private_metadata=metadata,
            view_id=f"VE{i:03d}{n:03d}",
        )
        assert await tally.timed("submit escalate", form) == b""
        tally.cycles.append((case_ref, ref))
        await think()


def check_chain(ref: str, stored: list[Any]) -> None:
    """The audit chain: numbered 1..n, each linked to the one before, each hash its content's."""
    previous = GENESIS
    for seq, event in enumerate(stored, start=1):
        assert event.seq == seq, f"{ref}: event {seq} is numbered {event.seq}"
        assert event.prev_hash == previous, f"{ref}: event {seq} does not follow {seq - 1}"
        digest = event_hash(
            event.prev_hash, ref, event.seq, event.type, event.at, event.actor, event.data
        )
        assert event.hash == digest, f"{ref}: event {seq} is not what was recorded"
        previous = event.hash


async def drain(bot: SlackBot) -> None:
    """Send everything still queued (thread replies wait for their thread's first post)."""
    await bot.server.settle()
    assert bot.server.dispatcher is not None
    for _ in range(50):
        report = await bot.server.dispatcher.run_once(limit=1000)
        if not (report.sent or report.deferred or report.retried):
            return
    raise AssertionError("the outbox did not empty")


async def test_fifty_people_at_once_lose_nothing_and_double_nothing(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("pg_url") if os.environ.get("LOAD_DB") == "pg" else None
    async with slack_bot(
        tmp_path,
        clock,
        monkeypatch,
        database_url=url,
        extra_people=crowd(),
        # Everyone here types /escalate a few times a minute: well within a generous limit.
        command_rate_per_minute=600,
        command_burst=600,
    ) as bot:
        tally = Tally()
        started = time.perf_counter()
        end = time.monotonic() + SECONDS
        await asyncio.gather(*(person(bot, tally, i, end) for i in range(USERS)))
        wall = time.perf_counter() - started
        await drain(bot)

        # Every request answered.
        assert set(tally.statuses) == {200}

        # None lost, none doubled: one dispute per case, each with its whole story once.
        store = bot.core.store
        with store.unit() as session:
            rows = session.execute(select(DisputeRow)).scalars().all()
            assert len(rows) == len(tally.cycles)
            case_refs = Counter(r.state["details"]["case_ref"] for r in rows)
            assert case_refs == Counter(case for case, _ in tally.cycles)
            assert {r.ref for r in rows} == {ref for _, ref in tally.cycles}
            for row in rows:
                assert row.stage == 2, f"{row.ref} is at stage {row.stage}"
                stored = store.events(session, row.ref)
                check_chain(row.ref, stored)
                kinds = Counter(e.type for e in stored)
                assert kinds["DisputeOpened"] == 1 and kinds["Acknowledged"] == 1, row.ref
                assert kinds["StageEscalated"] == 1 and kinds["ActionRefused"] == 0, row.ref
            outbox = Counter(r.status for r in session.execute(select(OutboxRow)).scalars())
        assert set(outbox) == {"sent"}, outbox
        # Everyone raised against heard of it, once per dispute.
        for case, _ in tally.cycles:
            i = partner(int(case.split("-")[1]))
            dms = bot.api.messages_in("D" + slack_id_of(f"load.user{i:03d}"))
            hits = [m for m in dms if case in json.dumps(m.blocks)]
            assert len(hits) == 1, f"{case}: the other side was told {len(hits)} times"

        latencies = sorted(tally.latencies)
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"\nLOAD {USERS} users, {wall:.1f} s: {len(latencies)} requests, "
            f"{len(tally.cycles)} disputes opened, acknowledged and escalated; "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms, "
            f"{len(latencies) / wall:.1f} requests/s; {sum(outbox.values())} messages sent; "
            f"{len(tally.slow)} over Slack's {SLACK_LIMIT:.0f} s"
        )
