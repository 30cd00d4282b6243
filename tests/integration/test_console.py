"""The console end to end: typed lines in, the transcript out, the store checked afterwards.

`ConsoleChat` is driven on the `core` fixtures (a real database and the simulated clock) with
StringIO for stdin and stdout; `run_console` takes the simulated clock too; `chat` through
`bot.cli.main` and the installed `python -m bot` run on the real clock, so only what does not
depend on the day is checked there.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.adapters.console import ConsoleChat, ConsolePlatform
from bot.app import Core
from bot.cli import main, run_console
from bot.clock import FakeClock
from bot.config import Settings
from bot.conversation import Conversations
from bot.outbox import Dispatcher
from store.models import OutboxRow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "partnership.yaml"

# Amara Okafor logs a disagreement with Ben Carter at the Royal Wolverhampton NHS Trust.
LOG_AS_AMARA = [
    "escalate",
    "no",  # immediate risk
    "1",  # a professional disagreement
    "2",  # Royal Wolverhampton NHS Trust
    "1",  # Ben Carter
    "1",  # closing involvement
    "CS-204611",
    "Children's social care closed the case without a home visit.",
    "The health visitor saw bruising on 20 November.",
    "Reopen the case and hold a strategy discussion.",
    "",  # the disagreement arose today
    "yes",
]


async def chat(
    core: Core,
    person_id: str | None,
    lines: list[str],
    *,
    conversations: Conversations | None = None,
) -> str:
    """Run the console as `person_id` on these lines until input ends; the transcript."""
    out = io.StringIO()
    platform = ConsolePlatform(out, lambda: core.service.directory)
    dispatcher = Dispatcher(core.store, [platform], core.service.clock)
    person = core.service.directory.get(person_id) if person_id else None
    console = ConsoleChat(
        conversations or core.conversations,
        dispatcher,
        platform,
        person,
        stdin=io.StringIO("".join(f"{line}\n" for line in lines)),
    )
    assert await console.run() == 0
    return out.getvalue()


def flat(text: str) -> str:
    """The transcript with its line wrapping undone, to search for whole sentences."""
    return " ".join(text.split())


def pending_messages(core: Core) -> int:
    with core.store.unit() as session:
        return len(session.execute(select(OutboxRow).where(OutboxRow.status == "pending")).all())


def dispute_count(core: Core) -> int:
    with core.store.unit() as session:
        return core.store.count_disputes(session)


def stage_of(core: Core, ref: str) -> int:
    with core.store.unit() as session:
        return core.store.load(session, ref).stage


async def test_a_dispute_logged_acknowledged_and_escalated_in_the_console_reaches_both_line_managers(
    any_core: Core,
) -> None:
    script = [
        *LOG_AS_AMARA,
        "as ben.carter",
        "status WST-2026-0001",
        "1",  # [1] Acknowledge
        "3",  # [3] Escalate
        "We cannot agree whether the threshold is met.",
        "quit",
    ]
    transcript = await chat(any_core, "amara.okafor", script)
    text = flat(transcript)

    # Amara logs it; Ben Carter is told, with buttons he can press once he is at the keyboard.
    assert "Logged as WST-2026-0001. Next deadline: Tue 1 Dec, 17:00." in text
    assert "── to Ben Carter (Royal Wolverhampton NHS Trust) ──" in transcript
    assert (
        "Amara Okafor (City of Wolverhampton Council - Children's Social Care) has raised a "
        "professional disagreement (WST-2026-0001) with your agency." in text
    )

    # Ben's numbered buttons, from the status reply.
    ben_part = transcript.split("Hello Ben Carter", 1)[1]
    assert "[1] Acknowledge" in ben_part
    assert "[3] Escalate" in ben_part
    assert "Thank you: you acknowledged WST-2026-0001 at Thu 26 Nov, 10:00." in flat(ben_part)
    assert "── to Amara Okafor (City of Wolverhampton Council - Children's Social Care)" in ben_part

    # The escalation, and who is told of it.
    escalated = transcript.split("Escalate: WST-2026-0001", 1)[1]
    assert "Why does this need to go to the next stage?" in escalated
    assert (
        "WST-2026-0001 is now at stage 2 (Line managers and safeguarding leads). Told: Tom "
        "Hadley, Rosa Delgado." in flat(escalated)
    )
    assert "── to Tom Hadley (City of Wolverhampton Council - Children's Social Care)" in escalated
    assert "── to Rosa Delgado (Royal Wolverhampton NHS Trust)" in escalated
    for agency in [
        "City of Wolverhampton Council - Children's Social Care",
        "Royal Wolverhampton NHS Trust",
    ]:
        assert (
            "WST-2026-0001 has been escalated to stage 2 (Line managers and safeguarding leads) "
            f"by Ben Carter (Royal Wolverhampton NHS Trust). As the {agency}'s line manager"
            in flat(escalated)
        )
    assert "Reason for escalation: We cannot agree whether the threshold is met." in flat(escalated)
    assert transcript.rstrip().endswith("Goodbye.")

    assert stage_of(any_core, "WST-2026-0001") == 2
    assert pending_messages(any_core) == 0  # the console delivered everything


async def test_an_interrupted_intake_carries_on_in_a_later_session(core: Core) -> None:
    first = await chat(core, "amara.okafor", [*LOG_AS_AMARA[:7], "cancel"])
    assert "Stopped. Your answers so far are saved: type escalate to carry on." in first
    assert dispute_count(core) == 0

    # A later session, with a new Conversations as after a restart.
    later = await chat(
        core,
        "amara.okafor",
        ["escalate", *LOG_AS_AMARA[7:]],
        conversations=Conversations(core.service),
    )
    assert "Carrying on from where you left off" in later
    assert "(If yes, you'll be told what to do now" not in later  # not asked again
    after = later.split("Carrying on from where you left off", 1)[1]
    questions = [line for line in after.splitlines() if line.endswith("?")]
    assert questions[0] == "What was decided (or not done) that you disagree with?"
    assert "Logged as WST-2026-0001." in later
    assert dispute_count(core) == 1


async def test_input_ending_mid_intake_keeps_the_answers(core: Core) -> None:
    await chat(core, "amara.okafor", LOG_AS_AMARA[:5])
    transcript = await chat(core, "amara.okafor", ["escalate"])
    assert "Carrying on from where you left off" in transcript
    assert "What is the disagreement about?" in transcript


async def test_an_out_of_scope_answer_in_the_console_stops_and_the_next_escalate_starts_afresh(
    core: Core,
) -> None:
    transcript = await chat(core, "amara.okafor", ["escalate", "no", "3", "escalate"])
    text = flat(transcript)
    assert (
        "An allegation against a member of staff: this escalation protocol does not apply. "
        "Allegations against people who work with children or adults go to the agency's "
        "designated officer (LADO)" in text
    )
    again = transcript.split("designated officer (LADO)", 1)[1]
    assert "Carrying on" not in again
    assert "Is a child or adult at immediate risk of significant harm?" in again
    assert dispute_count(core) == 0
    assert pending_messages(core) == 0


async def test_bad_answers_in_the_console_are_explained_and_asked_again(core: Core) -> None:
    script = [
        "escalate",
        "perhaps",  # not yes or no
        "no",
        "1",
        "Ministry of Magic",  # not an agency in the list
        "2",
        "1",
        "1",
        "CS-204611",
        "A decision",
        "x" * 50_000,  # far too long
        "Reasons",
        "Outcome",
        "27/11/2026",  # tomorrow
        "31/02/2026",  # no such day
        "25/11/2026",
        "yes",
    ]
    transcript = await chat(core, "amara.okafor", script)
    text = flat(transcript)
    assert "Please answer yes or no." in text
    assert (
        "'Ministry of Magic' is not one of the options offered; reply with its number or its name."
        in text
    )
    assert "That is 50,000 characters; please keep it under 3,000" in text
    assert "The date of the disagreement cannot be in the future." in text
    assert "'31/02/2026' is not a date I understand" in text

    # Each question is asked again after its error (the summary repeats them once more).
    def asked(prompt: str) -> int:
        return len(re.findall(rf"^{re.escape(prompt)}$", transcript, flags=re.MULTILINE))

    assert asked("Which agency do you disagree with?") == 2
    assert asked("What are your evidence-based reasons for disagreeing?") == 2
    assert transcript.count("When did the disagreement arise (or the decision reach you)?  (") == 3
    assert "Logged as WST-2026-0001." in text
    with core.store.unit() as session:
        details = core.store.load(session, "WST-2026-0001").details
    assert (details.reasons, details.disagreement_date.isoformat()) == ("Reasons", "2026-11-25")


async def test_saying_no_at_confirm_in_the_console_logs_nothing(core: Core) -> None:
    transcript = await chat(core, "amara.okafor", [*LOG_AS_AMARA[:-1], "no", "escalate"])
    assert "Nothing has been logged. Type escalate to start again." in transcript
    assert dispute_count(core) == 0
    assert "Carrying on" not in transcript


async def test_markup_and_terminal_escapes_typed_are_shown_literally_and_harmlessly(
    core: Core,
) -> None:
    typed = "<@U123> *bold* <!channel> \x1b[2J\x1b]0;pwned\x07"
    script = [*LOG_AS_AMARA[:7], typed, *LOG_AS_AMARA[8:]]
    transcript = await chat(core, "amara.okafor", script)
    assert "\x1b" not in transcript and "\x07" not in transcript
    assert "Decision disputed: <@U123> *bold* <!channel> [2J]0;pwned" in flat(transcript)
    # The summary before confirming echoes it the same way.
    assert "disagree with? <@U123> *bold* <!channel> [2J]0;pwned" in flat(transcript)


async def test_immediate_risk_out_of_hours_in_the_console_pings_the_lead_and_on_call_at_once(
    core: Core, clock: FakeClock
) -> None:
    clock.set(datetime(2026, 11, 26, 20, 0, tzinfo=UTC))
    transcript = await chat(core, "amara.okafor", ["escalate", "yes"])
    text = flat(transcript)
    assert (
        "URGENT - If a child or an adult with care and support needs is at immediate risk" in text
    )
    assert "Your designated safeguarding lead: Olivia Brandt" in text
    assert "Out of hours, your agency's route is the council's Emergency Duty Team." in text
    # The pings are delivered straight away, before the next question.
    before_next = transcript.split("What is this about?", 1)[0]
    assert (
        "── to Olivia Brandt (City of Wolverhampton Council - Children's Social Care)"
        in before_next
    )
    assert (
        "── to Sam Whitlock (City of Wolverhampton Council - Children's Social Care)" in before_next
    )
    assert dispute_count(core) == 0


async def test_a_guest_is_asked_about_themselves_and_remembered(core: Core) -> None:
    script = [
        *LOG_AS_AMARA[:-1],
        "Zed Okoro",  # name
        "Black Country Healthcare NHS Foundation Trust",
        "Gareth Pugh",  # line manager
        "yes",
        "list",
    ]
    transcript = await chat(core, None, script)
    text = flat(transcript)
    assert "You are not in the partnership directory; type escalate to log a disagreement." in text
    assert "What is your name?" in text
    assert "Which agency do you work for?" in text
    assert "Who is your line manager?" in text
    assert "Logged as WST-2026-0001." in text
    assert "WST-2026-0001: stage 1 (Practitioners), open" in text
    assert text.endswith("you are the raiser >")
    zed = core.service.directory.get("zed.okoro")
    assert zed is not None and (zed.agency, zed.manager) == ("bchft", "gareth.pugh")


async def test_the_console_answers_help_nonsense_and_missing_buttons_plainly(core: Core) -> None:
    transcript = await chat(
        core, "amara.okafor", ["help", "frobnicate", "7", "as nobody", "timeline", "exit"]
    )
    text = flat(transcript)
    assert "escalate status REF" in text and "as PERSON_ID" in text
    assert "I don't know 'frobnicate'. Type help for commands." in text
    assert "There is no button with that number." in text
    assert "Nobody in the directory has the id 'nobody'." in text
    assert "2 working days - by Mon 30 Nov, 17:00" in text
    assert text.endswith("Goodbye.")


def test_run_console_logs_a_dispute_on_the_simulated_clock(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/console.db", escalation_config=str(EXAMPLE_CONFIG)
    )
    clock = FakeClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    code = run_console(
        "amara.okafor",
        stdin=io.StringIO("".join(f"{line}\n" for line in [*LOG_AS_AMARA, "list"])),
        out=out,
        settings=settings,
        clock=clock,
    )
    assert code == 0
    text = flat(out.getvalue())
    assert "Logged as WST-2026-0001. Next deadline: Tue 1 Dec, 17:00." in text
    assert "WST-2026-0001: stage 1 (Practitioners), open, next deadline Tue 1 Dec, 17:00" in text


def test_the_chat_command_logs_a_dispute_from_piped_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `escalation-bot chat` reads the real clock, so only what does not depend on the day is
    # checked here; the tests above pin the dates with the simulated clock.
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("ESCALATION_CONFIG", str(EXAMPLE_CONFIG))
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("".join(f"{x}\n" for x in [*LOG_AS_AMARA, "list"]))
    )
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["chat", "--as", "amara.okafor"]) == 0
    text = flat(out.getvalue())
    assert re.search(
        r"Logged as WST-\d{4}-0001\. Next deadline: \w{3} \d{1,2} \w{3}, 17:00\.", text
    )
    assert "── to Ben Carter (Royal Wolverhampton NHS Trust)" in out.getvalue()
    assert re.search(r"WST-\d{4}-0001: stage 1 \(Practitioners\), open", text)


def test_the_installed_command_refuses_someone_not_in_the_directory(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "ESCALATION_CONFIG": str(EXAMPLE_CONFIG),
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "chat", "--as", "nobody.here"],
        input="",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "Nobody in the directory has the id 'nobody.here'." in result.stderr


async def test_the_raiser_views_the_details_with_a_numbered_button(core: Core) -> None:
    transcript = await chat(core, "amara.okafor", [*LOG_AS_AMARA, "3"])
    assert "[1] Add note  [2] Escalate  [3] View details" in transcript
    details = flat(transcript.rsplit("── to you", 1)[1])
    assert details.startswith("─")
    assert (
        "WST-2026-0001 Agencies: City of Wolverhampton Council - Children's Social Care and Royal Wolverhampton NHS Trust"
        in details
    )
    assert "Stage: 1 of 4: Practitioners" in details
    assert "Case reference: CS-204611" in details
