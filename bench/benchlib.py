"""What the benchmarks share: paths, the machine's description, percentiles, result sections,
fast bulk seeding of disputes, and a throwaway PostgreSQL server.

Benchmarks only: may import anything in the repository, tests/fakes and tests/pgserver.py.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
TESTS = ROOT / "tests"
# Run as scripts, sys.path starts at bench/: the repository root holds `bot` and `store`, and
# tests/ holds the fakes and the PostgreSQL helper.
for _path in (str(ROOT), str(TESTS), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

if TYPE_CHECKING:
    # Imported where used: a benchmark's child process (a fake, the bare Bolt app) starts in a
    # second instead of three when it does not need the bot.
    from bot.app import Core
    from bot.clock import Clock, FakeClock
    from bot.disputes import DisputeDetails
    from store.repository import Store

EXAMPLE_CONFIG = ROOT / "examples" / "partnership.yaml"
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
# A Thursday in a working week (10:00 London, GMT): the disputes the benchmarks seed open here.
OPENED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
# Far enough ahead that no timer of a seeded "not due" dispute comes in any benchmark.
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def clear_proxies() -> None:
    """slack_sdk sends even 127.0.0.1 through HTTPS_PROXY (DESIGN.md): local fakes need none."""
    for name in PROXY_VARIABLES:
        os.environ.pop(name, None)


def child_env() -> dict[str, str]:
    """The environment for a benchmark's child process: no proxies, the repository importable."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), str(BENCH)])
    # Bolt switches to OAuth when these are set; the benchmarks give it a token explicitly.
    for name in ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_BOT_TOKEN"):
        env.pop(name, None)
    return env


# ---- the machine ---------------------------------------------------------------------------


def cpu_model() -> tuple[str, int]:
    """The CPU's model name and how many logical CPUs this process may use."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return model, int(count or 1)


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    model, count = cpu_model()
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    return [
        ("CPU", f"{model} x {count}"),
        ("Memory", memory),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Load average at start (1, 5, 15 min)", load),
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]


# ---- figures -------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The 50th percentile."""
    return percentile(values, 50)


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table."""
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def ratio(value: float, baseline: float) -> str:
    """value / baseline as "1.23x"."""
    if baseline <= 0:
        return "n/a"
    return f"{value / baseline:.2f}x"


@dataclass
class Verdict:
    """One target and whether this run met it (None: not measured)."""

    target: str
    met: bool | None
    detail: str = ""

    @property
    def mark(self) -> str:
        """met / NOT met / not measured."""
        return {True: "met", False: "**not met**", None: "not measured"}[self.met]


@dataclass
class Section:
    """One benchmark's results: a markdown table, notes, and the targets it was held to."""

    number: int
    title: str
    intro: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    seconds: float = 0.0
    headline: str = ""  # the figure for the summary, when there is no target
    data: dict[str, float] = field(default_factory=dict)  # raw figures, for tests and run.py

    def table(self) -> str:
        """The rows as a markdown table."""
        lines = [
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.headers))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    def markdown(self) -> str:
        """The whole section."""
        parts = [f"## {self.number}. {self.title}", "", self.intro, "", self.table(), ""]
        if self.verdicts:
            parts += [f"- Target: {v.target}: {v.mark}. {v.detail}".rstrip() for v in self.verdicts]
            parts.append("")
        parts += [f"{note}\n" for note in self.notes]
        parts.append(f"_This benchmark took {self.seconds:.0f} s._\n")
        return "\n".join(parts)


# ---- databases -----------------------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[object]:
    """A private PostgreSQL server (tests/pgserver.py), stopped and removed on exit."""
    from pgserver import PostgresServer

    with PostgresServer() as server:
        yield server


@contextmanager
def scratch(prefix: str = "bench-") -> Iterator[Path]:
    """A temporary directory on the ordinary disk (not tmpfs), removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_core(database_url: str, clock: Clock, **settings: object) -> Core:
    """The bot's core on the example partnership, the schema brought up to date."""
    from bot.app import build_core
    from bot.config import Settings

    config = settings.pop("escalation_config", str(EXAMPLE_CONFIG))
    return build_core(
        Settings(database_url=database_url, escalation_config=str(config), **settings),  # type: ignore[arg-type]
        clock=clock,
    )


def details(**overrides: object) -> DisputeDetails:
    """A typical disagreement: the council's social worker with the NHS trust's decision."""
    from bot.disputes import DisputeDetails

    data: dict[str, object] = {
        "raised_by": "amara.okafor",
        "raising_agency": "cwc-childrens",
        "receiving_agency": "rwt",
        "receiving_person": "ben.carter",
        "category": "threshold",
        "case_ref": "CS-204611",
        "decision": "The referral was closed with no further action after the initial assessment.",
        "reasons": "Three missed health appointments, a new injury reported by school, and the "
        "family's move to a new address; we think the threshold for a strategy discussion is met.",
        "outcome_sought": "A strategy discussion this week.",
        "disagreement_date": date(2026, 11, 26),
    }
    data.update(overrides)
    return DisputeDetails(**data)  # type: ignore[arg-type]


def open_template(core: Core, clock: FakeClock, at: datetime, **overrides: object) -> str:
    """Open one real dispute through the service at `at`; its reference."""
    before = clock.now()
    clock.set(at)
    try:
        outcome = core.service.open(details(**overrides))
    finally:
        clock.set(before)
    if not outcome.ok or outcome.dispute is None:
        raise RuntimeError(f"could not open the template dispute: {outcome.text}")
    return outcome.dispute.ref


_DISPUTE_COLUMNS = (
    "partnership_id, policy_id, policy_version, policy_fingerprint, status, stage, "
    "raising_agency, receiving_agency, raised_by, receiving_person, category, immediate_risk, "
    "next_due_at, opened_at, closed_at, updated_at, version"
)
_CHILD_COPIES = {
    "events": "seq, type, at, actor, data, prev_hash, hash",
    "deadlines": "stage, step_id, due_at, status, local_target",
    "participants": "person_id, relation",
}


def copy_dispute(
    store: Store,
    template: str,
    prefix: str,
    count: int,
    *,
    wake_at: datetime,
    participants: bool = False,
) -> int:
    """Insert `count` copies of dispute `template` as PREFIX1..PREFIXn, with `wake_at`, in SQL.

    Each copy has the template's state (its own reference written into it), events and
    deadlines, and with `participants` its participants (eight rows a dispute, the slowest
    part, and all the same eight people, which no real partnership looks like); none of its
    outbox messages. The copies' event hashes are the template's, so `audit verify` would
    fail on them: they are for timing only. Returns the number of disputes inserted. Seconds
    for 100,000 disputes, where opening them one by one through the service takes an hour.
    """
    from sqlalchemy import bindparam, text

    from store.models import UTCDateTime

    if count <= 0:
        return 0
    postgres = store.is_postgres
    ref = "(:prefix || CAST(n.i AS TEXT))"
    # Its reference written into each copy's state by text replacement: both backends keep the
    # JSON text as SQLAlchemy wrote it, and this is 3x faster than jsonb_set on PostgreSQL.
    state = f"replace(CAST(t.state AS TEXT), :old, '\"ref\": \"' || {ref} || '\"')"
    if postgres:
        state = f"CAST({state} AS json)"
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
    insert_disputes = text(
        numbers
        + f"INSERT INTO disputes (ref, wake_at, state, {_DISPUTE_COLUMNS}) "
        + f"SELECT {ref}, :wake_at, {state}, "
        + ", ".join(f"t.{c.strip()}" for c in _DISPUTE_COLUMNS.split(","))
        + " FROM disputes t CROSS JOIN n WHERE t.ref = :template"
    ).bindparams(bindparam("wake_at", type_=UTCDateTime()))
    copied = {k: v for k, v in _CHILD_COPIES.items() if participants or k != "participants"}
    with store.unit() as session:
        if postgres:
            # Bulk loading: skip the foreign-key triggers (the rows are copies of valid ones).
            session.execute(text("SET LOCAL session_replication_role = replica"))
        template_id: int = session.execute(
            text("SELECT id FROM disputes WHERE ref = :ref"), {"ref": template}
        ).scalar_one()
        before: int = session.execute(
            text("SELECT COALESCE(MAX(id), 0) FROM disputes")
        ).scalar_one()
        session.execute(
            insert_disputes,
            {
                "prefix": prefix,
                "count": count,
                "wake_at": wake_at,
                "template": template,
                "old": f'"ref": "{template}"',
            },
        )
        first: Any = session.execute(
            text("SELECT state FROM disputes WHERE ref = :ref"), {"ref": f"{prefix}1"}
        ).scalar_one()
        if (json.loads(first) if isinstance(first, str) else first)["ref"] != f"{prefix}1":
            raise RuntimeError("the copies' state does not carry their own reference")
        for table, columns in copied.items():
            picked = ", ".join(f"c.{c.strip()}" for c in columns.split(","))
            session.execute(
                text(
                    f"INSERT INTO {table} (dispute_id, {columns}) "
                    f"SELECT d.id, {picked} FROM disputes d JOIN {table} c ON c.dispute_id = :tid "
                    "WHERE d.id > :before"
                ),
                {"tid": template_id, "before": before},
            )
        inserted: int = session.execute(
            text("SELECT COUNT(*) FROM disputes WHERE id > :before"), {"before": before}
        ).scalar_one()
    if postgres:
        with store.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    return int(inserted)


def delete_disputes(store: Store, prefix: str) -> None:
    """Delete the disputes whose references start with `prefix`, their rows and their messages."""
    from sqlalchemy import text

    with store.unit() as session:
        ids = "SELECT id FROM disputes WHERE ref LIKE :pattern"
        pattern = {"pattern": prefix + "%"}
        session.execute(text(f"DELETE FROM outbox WHERE dispute_id IN ({ids})"), pattern)
        for table in (*_CHILD_COPIES, "agreed_actions"):
            session.execute(text(f"DELETE FROM {table} WHERE dispute_id IN ({ids})"), pattern)
        session.execute(text("DELETE FROM disputes WHERE ref LIKE :pattern"), pattern)


def count_open(store: Store) -> int:
    """How many disputes are open."""
    from sqlalchemy import text

    with store.unit() as session:
        return int(
            session.execute(
                text("SELECT COUNT(*) FROM disputes WHERE closed_at IS NULL")
            ).scalar_one()
        )
