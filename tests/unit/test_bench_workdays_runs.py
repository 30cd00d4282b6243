"""The working-day benchmark still runs, so it cannot rot between `make bench` runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_workdays.py"


def load_benchmark() -> object:
    spec = importlib.util.spec_from_file_location("bench_workdays", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quick_benchmark_agrees_with_the_baseline_and_prints_a_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = load_benchmark()
    assert module.main(["--quick"]) == 0  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "ratio" in out
    assert "| WorkingCalendar.add_working_days" in out


def test_all_three_implementations_are_timed_against_the_loop() -> None:
    section = load_benchmark().run(tiny=True)  # type: ignore[attr-defined]
    rates = section.data
    assert set(rates) == {"baseline", "WorkingCalendar.add_working_days", "workalendar"}
    assert all(rate > 0 for rate in rates.values())
    assert section.rows[0][-1] == "1.00x"
