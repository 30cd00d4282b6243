"""The intake modal's option lists are serialised once and shared: what Slack receives must be
exactly what serialising every element afresh gives, and must follow the directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_sdk.models.blocks import Option, OptionGroup

from bot.adapters.slack import blocks
from bot.config import load_partnership
from bot.directory import Directory
from bot.flows.engine import FlowContext, FlowRunner
from bot.flows.intake import intake_flow

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "partnership.yaml"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def intake_json(directory: Directory | None = None, answers: dict[str, Any] | None = None) -> str:
    p = load_partnership(EXAMPLE_CONFIG)
    d = directory or p.directory
    runner = FlowRunner(
        intake_flow(), FlowContext(d, p.policy, p.calendar, NOW, d.get("amara.okafor"))
    )
    view = blocks.flow_view(
        runner,
        callback_id="intake",
        title="Log a disagreement",
        submit="Log it",
        answers=answers or {},
        notices=[],
        metadata={},
    )
    return json.dumps(view.to_dict(), sort_keys=True)


def fresh(monkeypatch: Any) -> None:
    """Serialise every option afresh, as slack_sdk alone would."""
    blocks._shared_options.cache_clear()
    blocks._shared_groups.cache_clear()
    monkeypatch.setattr(blocks, "_SerialisedOnce", Option)
    monkeypatch.setattr(blocks, "_GroupSerialisedOnce", OptionGroup)


def test_shared_options_give_slack_exactly_what_fresh_ones_do(monkeypatch: Any) -> None:
    answers = {"immediate_risk": False, "other_agency": "rwt"}
    shared = [intake_json(), intake_json(), intake_json(answers=answers)]
    assert shared[0] == shared[1]  # the second time from the shared options
    with monkeypatch.context() as patched:
        fresh(patched)
        assert [intake_json(), intake_json(answers=answers)] == [shared[0], shared[2]]
    blocks._shared_options.cache_clear()
    blocks._shared_groups.cache_clear()


def test_options_follow_the_directory_not_a_stale_copy() -> None:
    before = intake_json()
    p = load_partnership(EXAMPLE_CONFIG)
    ben = p.directory.get("ben.carter")
    assert ben is not None
    renamed = p.directory.with_people([ben.model_copy(update={"name": "Benedict Carter"})])
    after = intake_json(renamed)
    assert "Benedict Carter" in after and "Benedict Carter" not in before
