"""The tick, digest, outbox and memory benchmarks still run (tiny, on SQLite and the suite's
PostgreSQL), so they cannot rot between `make bench` runs. They assert that the numbers are
there and sane, never how fast."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pgserver import PostgresServer

BENCH = str(Path(__file__).resolve().parents[2] / "bench")


def benchmark(name: str) -> ModuleType:
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module(name)


@pytest.mark.postgres
def test_the_tick_benchmark_fires_what_is_due_at_every_size(pg_server: PostgresServer) -> None:
    section = benchmark("bench_tick").run(tiny=True, pg=pg_server)
    for backend in ("sqlite", "postgresql"):
        for size in (60, 120):
            assert section.data[f"{backend}.{size}.before"] > 0
            assert section.data[f"{backend}.{size}.after"] > 0
            assert section.data[f"{backend}.{size}.fired"] >= 20  # 10 due, two ticks
    assert len(section.rows) == 4 and len(section.verdicts) == 4
    assert "left to" not in section.markdown()


@pytest.mark.postgres
def test_the_digest_benchmark_lists_the_disputes_near_breach(pg_server: PostgresServer) -> None:
    # It also checks that the digest says what it said when built from every open dispute.
    section = benchmark("bench_digest").run(tiny=True, pg=pg_server)
    for backend in ("sqlite", "postgresql"):
        for size in (50, 100, 200):
            assert section.data[f"{backend}.{size}.digest"] > 0
            assert section.data[f"{backend}.{size}.count"] > 0
        for size in (50, 100):
            assert section.data[f"{backend}.{size}.rebuild"] > 0
    assert len(section.rows) == 6
    assert "left to" not in section.markdown()


@pytest.mark.postgres
def test_the_outbox_benchmark_sends_everything_once(pg_server: PostgresServer) -> None:
    section = benchmark("bench_outbox").run(tiny=True, pg=pg_server)
    keys = {"sqlite.bare.1", "sqlite.dispatcher.1", "postgresql.bare.1"}
    keys |= {"postgresql.dispatcher.1", "postgresql.dispatcher.2"}
    assert set(section.data) == keys
    assert all(rate > 0 for rate in section.data.values())
    assert "left to" not in section.markdown()


def test_the_memory_benchmark_reports_a_peak_for_each_process() -> None:
    section = benchmark("bench_memory").run(tiny=True)
    for moment in ("before", "after"):
        assert 20 < section.data[f"{moment}.baseline_mib"] < 4096
        assert 20 < section.data[f"{moment}.peak_mib"] < 4096
    assert section.data["before.fired"] >= 5
    # After the digest time the first tick builds and sends the day's digest, once.
    assert section.data["before.digests"] == 0 and section.data["after.digests"] == 1
    assert section.data["after.listed"] >= 5


def test_make_bench_writes_the_file_with_the_machine_and_each_section(tmp_path: Path) -> None:
    run = benchmark("run")
    output = tmp_path / "BENCHMARKS.md"
    assert run.main(["--tiny", "--only", "workdays", "--output", str(output)]) == 0
    text = output.read_text()
    assert "## The machine" in text and "| CPU |" in text and "| Python |" in text
    assert "## 5. Working-day arithmetic" in text and "ratio" in text
    assert "figures mean nothing" in text


def test_a_benchmark_that_cannot_run_says_why() -> None:
    run = benchmark("run")
    text = run.render(
        [run.skipped("teams", "not yet: needs the Teams adapter")], [("CPU", "x")], tiny=False
    )
    assert "## 2. Teams message latency" in text
    assert "not yet: needs the Teams adapter" in text
