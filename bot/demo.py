"""`escalation-bot demo`: one dispute from intake to check-back on a simulated clock.

Runs through the production parts (service, store, timekeeper, outbox) with the console
platform, on a throwaway SQLite database and a small fictional partnership built for the
chosen policy, so any preset can be shown. Two weeks of a dispute take a second or two.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from bot.adapters.console import ConsolePlatform
from bot.clock import FakeClock
from bot.config import Partnership, PartnershipFile
from bot.directory import Agency, Directory, Person
from bot.disputes import Action, Dispute, DisputeDetails
from bot.outbox import Dispatcher
from bot.policy import Policy, load_preset
from bot.scheduler import Timekeeper
from bot.service import Outcome, Service
from bot.workdays import format_when
from store import db
from store.repository import Store

# Mon 7 Dec 2026, 10:00 in London.
START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
TICK = timedelta(minutes=30)
LIMIT = timedelta(days=40)

# Fictional people only. Roles the policy needs beyond these are given to each agency's lead.
PEOPLE: dict[str, list[tuple[str, str, str, tuple[str, ...], str | None]]] = {
    "council": [
        ("sam.rowe", "Sam Rowe", "Social Worker", ("practitioner",), "priya.nair"),
        ("priya.nair", "Priya Nair", "Team Manager", ("line_manager",), "dev.holt"),
        ("dev.holt", "Dev Holt", "Head of Service", ("designated_safeguarding_lead",), None),
    ],
    "trust": [
        ("lena.fox", "Lena Fox", "School Nurse", ("practitioner",), "omar.quinn"),
        ("omar.quinn", "Omar Quinn", "Named Nurse", ("line_manager",), "june.park"),
        ("june.park", "June Park", "Head of Safeguarding", ("designated_safeguarding_lead",), None),
    ],
}
PARTNERSHIP_LEAD = ("ada.lowe", "Ada Lowe", "Partnership Manager")


def demo_directory(policy: Policy) -> Directory:
    """Two agencies and the partnership, with every role the policy calls on held by someone."""
    extra = sorted(set(policy.roles()) - {"practitioner", "line_manager"})
    agencies = [
        Agency(id="council", name="Northby Council Children's Services", kind="council"),
        Agency(id="trust", name="Northby Community NHS Trust", kind="nhs"),
        Agency(id="partnership", name="Northby Safeguarding Partnership", kind="partnership"),
    ]
    people: list[Person] = []
    for agency, rows in PEOPLE.items():
        for pid, name, title, own, manager in rows:
            # The agency's lead holds every further role the policy calls on.
            roles = own if manager else tuple(dict.fromkeys((*own, *extra)))
            people.append(
                Person(id=pid, name=name, agency=agency, title=title, roles=roles, manager=manager)
            )
    pid, name, title = PARTNERSHIP_LEAD
    people.append(
        Person(id=pid, name=name, agency="partnership", title=title, roles=("admin", *extra))
    )
    return Directory(agencies, people)


class Demo:
    """The scripted walk-through."""

    def __init__(self, policy: Policy, out: TextIO, database_url: str) -> None:
        self.out = out
        self.clock = FakeClock(START)
        self.policy = policy
        directory = demo_directory(policy)
        config = PartnershipFile(
            id="northby-demo",
            name="Northby Safeguarding Partnership (demo)",
            policy=policy.id,
            reference_prefix="DEMO",
        )
        partnership = Partnership(config, policy, directory, policy.calendar(), Path("."))
        db.upgrade(database_url)
        self.store = Store(database_url)
        self.service = Service(self.store, partnership, self.clock)
        self.platform = ConsolePlatform(out, lambda: self.service.directory)
        self.dispatcher = Dispatcher(
            self.store,
            [self.platform],
            self.clock,
            admins=lambda: [p.id for p in directory.holding("admin")],
        )
        self.timekeeper = Timekeeper(self.service, self.dispatcher)
        self.ref = ""

    def scene(self, title: str) -> None:
        """A heading with the simulated date and time."""
        when = format_when(self.clock.now(), self.policy.calendar().tz)
        self.out.write(f"\n{'=' * 88}\n{when} - {title}\n{'=' * 88}\n")

    async def deliver(self) -> None:
        """Send whatever is queued, through the console platform."""
        await self.dispatcher.run_once()

    async def act(self, person: str, action: Action, title: str, **kwargs: object) -> Outcome:
        """A person does something; show it and what it caused."""
        self.scene(title)
        outcome = self.service.act(self.ref, person, action, **kwargs)
        self.out.write(f"{self.service.notices().name(person)}: {outcome.text}\n")
        if not outcome.ok:
            raise RuntimeError(f"the demo step failed: {outcome.text}")
        await self.deliver()
        return outcome

    async def wait_for(self, what: str, done: Callable[[Dispute], bool]) -> Dispute:
        """Let simulated time pass, tick by tick, until `done`; show each tick that did something."""
        limit = self.clock.now() + LIMIT
        while self.clock.now() < limit:
            self.clock.advance(TICK)
            timers = self.service.tick()
            if timers.fired or timers.digest:
                self.scene(what if timers.fired else "The daily digest")
                await self.deliver()
            dispute = self.dispute()
            if done(dispute):
                return dispute
        raise RuntimeError(f"nothing happened in {LIMIT.days} simulated days: {what}")

    def dispute(self) -> Dispute:
        """The dispute as it is now."""
        with self.store.unit() as session:
            return self.store.load(session, self.ref)

    async def run(self) -> int:
        """The whole story."""
        c = "sam.rowe", "priya.nair"
        t = "lena.fox", "omar.quinn"
        self.out.write(
            f"Demo: one professional disagreement under {self.policy.name}, on a simulated "
            "clock.\nEvery message below is what the bot sends, and to whom.\n"
        )
        self.platform.current = None
        self.scene("Sam Rowe (council) logs a disagreement with the NHS trust")
        opened = self.service.open(
            DisputeDetails(
                raised_by=c[0],
                raising_agency="council",
                receiving_agency="trust",
                receiving_person=t[0],
                category=self.policy.categories[0].id,
                case_ref="NB-100234",
                decision="The trust closed the health referral with no further action.",
                reasons="Two missed appointments and a new bruise seen at school this week.",
                outcome_sought="A joint home visit and a strategy discussion.",
                disagreement_date=self.clock.now().date(),
            )
        )
        assert opened.dispute is not None, opened.text
        self.ref = opened.dispute.ref
        self.out.write(f"Sam Rowe: {opened.text}\n")
        await self.deliver()

        self.clock.advance(timedelta(hours=1))
        await self.act(t[0], Action.ACKNOWLEDGE, "Lena Fox (trust) acknowledges")

        automatic = self.policy.escalation.on_breach == "auto"
        await self.wait_for(
            "The timekeeper",
            lambda d: d.stage >= 2 or (not automatic and any(s.breached_at for s in d.steps)),
        )
        if self.dispute().stage < 2:
            await self.act(
                t[0],
                Action.ESCALATE,
                "Lena Fox escalates by hand (this policy asks rather than escalating itself)",
                reason="We could not agree within the time the policy allows.",
            )

        self.clock.advance(timedelta(hours=1))
        await self.act(c[1], Action.ACKNOWLEDGE, "Priya Nair (council manager) acknowledges")
        await self.act(t[1], Action.ACKNOWLEDGE, "Omar Quinn (trust manager) acknowledges")
        review = self.service.partnership.calendar.add_working_days(self.clock.now(), 3)
        review_day: date = self.service.partnership.calendar.local(review).date()
        self.clock.advance(timedelta(hours=2))
        await self.act(
            t[1],
            Action.PROPOSE_RESOLUTION,
            "Omar Quinn proposes a resolution",
            outcome="The referral is reopened and a joint visit is booked.",
            actions=[("Joint home visit with the social worker", t[0], review_day)],
        )
        self.clock.advance(timedelta(hours=1))
        await self.act(c[1], Action.RESPOND_TO_RESOLUTION, "Priya Nair confirms it", confirm=True)
        await self.wait_for(
            "Check-back on the agreed action",
            lambda d: bool(d.actions_due_review()),
        )
        self.clock.advance(timedelta(hours=1))
        await self.act(
            t[0], Action.REVIEW_ACTIONS, "Lena Fox confirms the visit happened", implemented=True
        )
        self.out.write(f"\nDemo finished: {self.ref} went from intake to check-back.\n")
        return 0


def run_demo(policy_name: str, out: TextIO) -> int:
    """Run the demo for a preset on a throwaway database; the exit status."""
    policy = load_preset(policy_name)
    with tempfile.TemporaryDirectory(prefix="escalation-demo-") as tmp:
        demo = Demo(policy, out, f"sqlite:///{tmp}/demo.db")
        try:
            return asyncio.run(demo.run())
        finally:
            demo.store.dispose()
