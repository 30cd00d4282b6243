"""The suite's own PostgreSQL server: version, isolation, loopback-only, SKIP LOCKED."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from pgserver import PostgresServer
from sqlalchemy import Engine, create_engine, inspect, text

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    eng = create_engine(pg_url)
    yield eng
    eng.dispose()


def test_server_is_postgresql_15(engine: Engine) -> None:
    with engine.connect() as conn:
        version: str = conn.execute(text("select version()")).scalar_one()
    assert version.startswith("PostgreSQL 15."), version


def test_databases_are_isolated(pg_server: PostgresServer) -> None:
    names = ("isolated_a", "isolated_b")
    first, second = (create_engine(pg_server.create_database(name)) for name in names)
    try:
        with first.begin() as conn:
            conn.execute(text("create table only_here (id int primary key)"))
        assert inspect(first).has_table("only_here")
        assert not inspect(second).has_table("only_here")
    finally:
        first.dispose()
        second.dispose()
        for name in names:
            pg_server.drop_database(name)


def test_listens_on_loopback_only(pg_url: str, engine: Engine) -> None:
    assert urlsplit(pg_url).hostname == "127.0.0.1"
    with engine.connect() as conn:
        assert conn.execute(text("show listen_addresses")).scalar_one() == "127.0.0.1"


def test_for_update_skip_locked_splits_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("create table jobs (id int primary key)"))
        conn.execute(text("insert into jobs select generate_series(1, 100)"))

    claim = text("select id from jobs order by id for update skip locked limit 60")
    with engine.connect() as a, engine.connect() as b, a.begin():
        first: set[int] = set(a.execute(claim).scalars())
        with b.begin():  # runs while a still holds its row locks
            second: set[int] = set(b.execute(claim).scalars())
    assert len(first) == 60
    assert len(second) == 40
    assert first.isdisjoint(second)
    assert first | second == set(range(1, 101))
