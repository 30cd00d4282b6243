"""One bot replica in a process of its own, for the replica and restart tests.

Run as a script, it does what ``escalation-bot serve`` does on each tick (the timers, then the
outbox) on a FakeClock, sending through ``HttpPlatform`` to a FakePlatformServer, until
nothing claimable is left, and prints a JSON report of what it opened, fired and sent: once
at ``--at``, or (``--commands``) for each JSON command line on stdin. ``Replica`` starts,
drives and stops such a process from a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from select import select as wait_readable
from typing import IO, Any

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # run as a script, for fakes.platform

from conftest import EXAMPLE_CONFIG, dispute_details  # noqa: E402
from fakes.platform import HttpPlatform  # noqa: E402
from sqlalchemy import and_, func, or_, select  # noqa: E402

from bot.app import Core, build_core  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.outbox import Dispatcher  # noqa: E402
from bot.scheduler import Timekeeper  # noqa: E402
from store.models import OutboxRow  # noqa: E402

# ---- the child -----------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    clock = FakeClock(datetime.fromisoformat(args.at))
    settings = Settings(database_url=args.db, escalation_config=str(EXAMPLE_CONFIG))
    core = build_core(settings, clock=clock, migrate=False)
    platform = HttpPlatform(args.api, sender=args.name)
    dispatcher = core.dispatcher([platform])
    timekeeper = Timekeeper(core.service, dispatcher)
    try:
        if not args.commands:
            report = await _work(args, core, dispatcher, timekeeper, opening=args.open)
            print(json.dumps(report), flush=True)
            return
        # One JSON command a line ({"at": ..., "open": n}), one JSON report a line back: the
        # test moves both replicas' clocks together and releases them at the same moment.
        print("ready", flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            clock.set(datetime.fromisoformat(command["at"]))
            report = await _work(args, core, dispatcher, timekeeper, opening=command.get("open", 0))
            print(json.dumps(report), flush=True)
    finally:
        await platform.close()
        core.store.dispose()


async def _work(
    args: argparse.Namespace,
    core: Core,
    dispatcher: Dispatcher,
    timekeeper: Timekeeper,
    *,
    opening: int,
) -> dict[str, Any]:
    """Open disputes, then tick until nothing claimable is left; what was done."""
    opened = []
    for _ in range(opening):
        outcome = core.service.open(dispute_details())
        assert outcome.ok and outcome.dispute is not None, outcome.text
        opened.append(outcome.dispute.ref)

    claimable = or_(
        and_(OutboxRow.status == "pending", OutboxRow.next_attempt_at <= core.service.clock.now()),
        OutboxRow.status == "sending",  # perhaps by the other replica: wait for it
    )
    totals: Counter[str] = Counter()
    deadline = time.monotonic() + args.timeout
    while True:
        if args.batch:
            timers = core.service.tick()
            outbox = await dispatcher.run_once(limit=args.batch)
        else:
            beat = await timekeeper.beat()
            timers, outbox = beat.timers, beat.outbox
        totals.update(
            fired=timers.fired,
            sent=outbox.sent,
            retried=outbox.retried,
            parked=outbox.parked,
            deferred=outbox.deferred,
        )
        if timers.fired or outbox.sent or outbox.retried or outbox.parked:
            continue
        with core.store.unit() as session:
            left = session.execute(select(func.count()).where(claimable)).scalar_one()
        if not left:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{args.name}: {left} messages still unsent after {args.timeout}s")
        await asyncio.sleep(0.01)  # the other replica holds them: look again shortly
    return {"name": args.name, "opened": opened, **totals}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--at", required=True, help="the simulated time, ISO 8601 with offset")
    parser.add_argument("--name", required=True)
    parser.add_argument("--open", type=int, default=0, help="disputes to open first")
    parser.add_argument("--batch", type=int, default=0, help="outbox batch (0: Timekeeper.beat)")
    parser.add_argument(
        "--commands", action="store_true", help="say ready, then work on each command line"
    )
    parser.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(_serve(parser.parse_args()))


# ---- the test's side -------------------------------------------------------------------------


class Replica:
    """A replica process; its stderr goes to a file the failure messages quote."""

    def __init__(
        self, log_dir: Path, *, db: str, api: str, at: datetime, name: str, **options: Any
    ) -> None:
        self.name = name
        self.stderr_path = log_dir / f"{name}.stderr"
        cmd = [
            sys.executable,
            __file__,
            f"--db={db}",
            f"--api={api}",
            f"--at={at.isoformat()}",
            f"--name={name}",
        ]
        for option, value in options.items():
            flag = "--" + option.replace("_", "-")
            cmd += [flag] if value is True else [f"{flag}={value}"]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=TESTS.parent,
            env=env,
        )

    @property
    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def readline(self, timeout: float) -> str:
        """The next line the replica prints, waiting at most `timeout` seconds."""
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        ready, _, _ = wait_readable([stdout], [], [], timeout)
        assert ready, f"{self.name} said nothing in {timeout}s:\n{self.stderr}"
        line = stdout.readline().strip()
        assert line, f"{self.name} ended:\n{self.stderr}"
        return line

    def go(self, at: datetime, *, open: int = 0) -> None:
        """Work at `at` (with --commands), opening `open` disputes first."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"at": at.isoformat(), "open": open}) + "\n")
        self.process.stdin.flush()

    def report(self, timeout: float = 90) -> dict[str, Any]:
        """What the last piece of work did (with --commands)."""
        return dict(json.loads(self.readline(timeout)))

    def result(self, timeout: float = 90) -> dict[str, Any]:
        """Wait for the replica to finish; what it did (its last report)."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        finally:
            self._stderr.close()
        assert self.process.returncode == 0, f"{self.name} failed:\n{self.stderr}"
        lines = out.strip().splitlines()
        return dict(json.loads(lines[-1])) if lines else {}

    def kill(self) -> int:
        """SIGKILL, and reap."""
        self.process.kill()
        self.process.wait(timeout=30)
        self._stderr.close()
        return self.process.returncode

    def stop(self) -> None:
        """Make sure the process is gone (after a failed test)."""
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        if not self._stderr.closed:
            self._stderr.close()


if __name__ == "__main__":
    main()
