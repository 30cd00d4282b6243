"""The Slack and Teams latency benchmarks still run (tiny), so they cannot rot between
`make bench` runs. They assert that the numbers are there and sane, never how fast."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = str(Path(__file__).resolve().parents[2] / "bench")


def benchmark(name: str) -> ModuleType:
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    return importlib.import_module(name)


def assert_latencies(data: dict[str, float]) -> None:
    for kind in ("help", "modal", "button"):
        for mode in ("sequential", "2"):
            p50, p99 = data[f"{kind}.{mode}.p50"], data[f"{kind}.{mode}.p99"]
            assert 0 < p50 <= p99 < 60, (kind, mode, p50, p99)
            assert data[f"{kind}.{mode}.bare_p99"] > 0


def test_the_slack_benchmark_times_the_bot_and_the_bare_app() -> None:
    section = benchmark("bench_slack").run(tiny=True)
    assert_latencies(section.data)
    # The modal opened and the message updated after each answer, timed to the fake Slack.
    for kind in ("modal", "button"):
        for mode in ("sequential", "2"):
            assert 0 < section.data[f"{kind}.{mode}.done_p99"] < 60, (kind, mode)
    assert "help.sequential.done_p99" not in section.data
    assert len(section.rows) == 6
    assert len(section.verdicts) == 6 and all(v.met is not None for v in section.verdicts)
    assert "| Acknowledge button | 2 concurrent |" in section.markdown()


def test_the_teams_benchmark_times_the_bot_and_the_bare_bot() -> None:
    section = benchmark("bench_teams").run(tiny=True)
    assert_latencies(section.data)
    # Both bots answer before their turns; the replies and card updates are timed to the
    # connector, each after its answer.
    for kind in ("help", "modal", "button"):
        for mode in ("sequential", "2"):
            key = f"{kind}.{mode}"
            for work in ("done_p99", "bare_done_p99"):
                assert section.data[f"{key}.p50"] < section.data[f"{key}.{work}"] < 60, key
    assert len(section.rows) == 6 and all(len(row) == 11 for row in section.rows)
    assert len(section.verdicts) == 6
