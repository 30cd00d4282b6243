"""`escalation-bot demo`: every preset runs from intake to check-back through the real parts."""

from __future__ import annotations

import io

import pytest

from bot.cli import main
from bot.demo import run_demo
from bot.policy import PRESETS


@pytest.mark.parametrize("policy", sorted(PRESETS))
def test_the_demo_walks_one_dispute_from_intake_to_check_back(policy: str) -> None:
    out = io.StringIO()
    assert run_demo(policy, out) == 0
    text = out.getvalue()
    # Each scene happened, in order, with the simulated date and time on it.
    scenes = [
        "Logged as DEMO-2026-0001",
        "acknowledged DEMO-2026-0001",
        "Overdue: DEMO-2026-0001",
        "has been escalated to stage 2",
        "proposes a resolution",
        "is resolved",
        "Check-back on DEMO-2026-0001",
        "Demo finished",
    ]
    positions = [text.find(scene) for scene in scenes]
    assert -1 not in positions, dict(zip(scenes, positions, strict=True))
    assert positions == sorted(positions)
    # Stage 2 reaches both line managers from the demo directory.
    assert "── to Priya Nair" in text and "── to Omar Quinn" in text
    assert "Mon 7 Dec, 10:00 - Sam Rowe (council) logs a disagreement" in text
    # Channel posts never carry the case's details.
    for block in text.split("\n── to ")[1:]:
        if block.startswith("#"):
            assert "NB-100234" not in block and "bruise" not in block


def test_demo_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--policy", "harrow"]) == 0
    assert "Demo finished" in capsys.readouterr().out


def test_demo_refuses_an_unknown_policy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--policy", "nowhere"])
    assert exc.value.code == 2
    assert "invalid choice: 'nowhere'" in capsys.readouterr().err
