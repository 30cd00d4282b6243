"""Shared fixtures for the whole suite. Add new fixtures under a section of their own."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

# tests/ is not a package: make tests/pgserver.py importable whatever pytest's import mode.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from pgserver import PostgresServer  # noqa: E402

from bot.app import Core, build_core  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.disputes import DisputeDetails  # noqa: E402

# --- Databases --------------------------------------------------------------------------------
# One PostgreSQL server per session, one fresh database per test. Nothing here skips: if the
# server cannot start, every test that uses it errors with the reason (and the server's log).


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgresql"],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once on SQLite and once on PostgreSQL."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


# --- The bot's core on a simulated clock ------------------------------------------------------
# The example partnership (examples/), a fresh database and a FakeClock set to a working
# morning. Tests move time with `clock.advance(...)`/`clock.set(...)`, never with sleeps.

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "examples" / "partnership.yaml"
# Thursday 26 November 2026, 10:00 in London (GMT, so 10:00 UTC).
START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def make_core(database_url: str, clock: FakeClock) -> Core:
    """The service, store and conversations on the example partnership."""
    settings = Settings(database_url=database_url, escalation_config=str(EXAMPLE_CONFIG))
    return build_core(settings, clock=clock)


@pytest.fixture
def core(sqlite_url: str, clock: FakeClock) -> Iterator[Core]:
    """The core on SQLite."""
    built = make_core(sqlite_url, clock)
    yield built
    built.store.dispose()


@pytest.fixture
def any_core(db_url: str, clock: FakeClock) -> Iterator[Core]:
    """The core, once on SQLite and once on PostgreSQL."""
    built = make_core(db_url, clock)
    yield built
    built.store.dispose()


def dispute_details(**overrides: object) -> DisputeDetails:
    """A typical disagreement: Amara Okafor (children's social care) with the NHS trust's
    decision, Ben Carter named; `overrides` change any field."""
    data: dict[str, object] = {
        "raised_by": "amara.okafor",
        "raising_agency": "cwc-childrens",
        "receiving_agency": "rwt",
        "receiving_person": "ben.carter",
        "category": "threshold",
        "case_ref": "CS-204611",
        "decision": "The referral was closed with no further action.",
        "reasons": "Three missed health appointments and a new injury reported by school.",
        "outcome_sought": "A strategy discussion.",
        "disagreement_date": date(2026, 11, 26),
    }
    data.update(overrides)
    return DisputeDetails(**data)  # type: ignore[arg-type]


async def wait_until(
    condition: Callable[[], object], what: str, seconds: float = 30.0, every: float = 0.05
) -> None:
    """Poll a condition while the loop keeps serving: a bounded wait for another task or process."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)
