"""The record and the board: `audit verify` against a database tampered with by hand, record
exports (md, html, pdf), the board report's figures, retention, and "Send me the record".

Times: the FakeClock starts Thu 26 Nov 2026 10:00 (GMT, so London time equals UTC). Under
Wolverhampton's policy a dispute opened then is due its way forward by Tue 1 Dec 17:00 (three
working days); the breach is noticed at the next opening, Wed 2 Dec 09:00.
"""

from __future__ import annotations

import csv
import io
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_CONFIG, dispute_details
from sqlalchemy import delete, select, update

import bot.cli
from bot.app import Core
from bot.archive import Archive
from bot.cli import main
from bot.clock import FakeClock
from bot.conversation import Conversations
from bot.disputes import Action
from bot.messages import ActionId, Message
from bot.records import REMOVED
from store.models import DisputeRow, EventRow, OutboxRow
from store.repository import event_hash

REPO = Path(__file__).resolve().parents[2]
CSPS = "Children's Social Care"
CWC = f"City of Wolverhampton Council - {CSPS}"
RWT = "Royal Wolverhampton NHS Trust"
WMP = "West Midlands Police"


def at(day: int, hour: int, minute: int = 0, month: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def open_dispute(core: Core, **overrides: Any) -> str:
    outcome = core.service.open(dispute_details(**overrides))
    assert outcome.ok and outcome.dispute is not None, outcome.text
    return outcome.dispute.ref


def act(core: Core, ref: str, person: str, action: Action, **kwargs: Any) -> None:
    outcome = core.service.act(ref, person, action, **kwargs)
    assert outcome.ok, outcome.text


def events(core: Core, ref: str, kind: str | None = None) -> list[Any]:
    with core.store.unit() as session:
        found = core.store.events(session, ref)
    return [e for e in found if kind is None or e.type == kind]


def dispute_id(core: Core, ref: str) -> int:
    with core.store.engine.begin() as conn:
        return int(conn.execute(select(DisputeRow.id).where(DisputeRow.ref == ref)).scalar_one())


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, db_url: str, clock: FakeClock, tmp_path: Path
) -> Iterator[None]:
    """`main([...])` on the test's database, the example partnership and the simulated clock."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("ESCALATION_CONFIG", str(EXAMPLE_CONFIG))
    monkeypatch.setattr(bot.cli, "_records_clock", lambda: clock)
    yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- audit verify: a database tampered with by hand ------------------------------------------


@pytest.fixture
def five_events(any_core: Core, clock: FakeClock) -> str:
    """#1 opened, #2 'raise' step done, #3 acknowledged, #4 Ben's note, #5 Amara's note."""
    ref = open_dispute(any_core)
    act(any_core, ref, "ben.carter", Action.ACKNOWLEDGE)
    clock.set(at(26, 11, month=11))
    act(any_core, ref, "ben.carter", Action.ADD_NOTE, text="Called school; awaiting the nurse.")
    clock.set(at(26, 12, month=11))
    act(any_core, ref, "amara.okafor", Action.ADD_NOTE, text="Agreed to meet on Monday.")
    assert [e.type for e in events(any_core, ref)] == [
        "DisputeOpened",
        "StepCompleted",
        "Acknowledged",
        "NoteAdded",
        "NoteAdded",
    ]
    return ref


def _edit(core: Core, ref: str) -> None:
    did = dispute_id(core, ref)
    note = events(core, ref)[3]
    with core.store.engine.begin() as conn:
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == did, EventRow.seq == 4)
            .values(data={**note.data, "text": "Called school; all is well."})
        )


def _delete(core: Core, ref: str) -> None:
    did = dispute_id(core, ref)
    with core.store.engine.begin() as conn:
        conn.execute(delete(EventRow).where(EventRow.dispute_id == did, EventRow.seq == 3))


def _insert(core: Core, ref: str) -> None:
    """A careful forger: makes room after #3 and inserts a note with a correctly computed hash."""
    did = dispute_id(core, ref)
    third = events(core, ref)[2]
    when = at(26, 10, 30, month=11)
    data = {"text": "Ben said there is nothing to worry about.", "stage": 1}
    forged = event_hash(third.hash, ref, 4, "NoteAdded", when, "ben.carter", data)
    with core.store.engine.begin() as conn:
        # In two steps, so no moment has two events with one number.
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == did, EventRow.seq > 3)
            .values(seq=EventRow.seq + 1000)
        )
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == did, EventRow.seq > 1000)
            .values(seq=EventRow.seq - 999)
        )
        conn.execute(
            EventRow.__table__.insert().values(
                dispute_id=did,
                seq=4,
                type="NoteAdded",
                at=when,
                actor="ben.carter",
                data=data,
                prev_hash=third.hash,
                hash=forged,
            )
        )


def _swap(core: Core, ref: str) -> None:
    did = dispute_id(core, ref)
    with core.store.engine.begin() as conn:
        for old, new in ((3, -1), (4, 3), (-1, 4)):
            conn.execute(
                update(EventRow)
                .where(EventRow.dispute_id == did, EventRow.seq == old)
                .values(seq=new)
            )


TAMPERING = {
    "edited": (
        _edit,
        [
            "event #4 (NoteAdded, Thu 26 Nov 2026 11:00) was edited: its content no longer "
            "matches its hash"
        ],
    ),
    "deleted": (_delete, ["event #3 is missing: it was deleted (the record goes from #2 to #4)"]),
    "inserted": (
        _insert,
        [
            "event #4 (NoteAdded, Thu 26 Nov 2026 10:30) was inserted: it is not part of the "
            "original record",
            "events #5 to #6 were renumbered: they were recorded as #4 to #5",
        ],
    ),
    "reordered": (
        _swap,
        [
            "event #3 (NoteAdded, Thu 26 Nov 2026 11:00) was recorded as #4: the events were "
            "reordered",
            "event #4 (Acknowledged, Thu 26 Nov 2026 10:00) was recorded as #3: the events were "
            "reordered",
        ],
    ),
}


def test_audit_verify_passes_a_database_nobody_has_touched(
    any_core: Core, five_events: str, cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    second = open_dispute(any_core, case_ref="CS-300001")
    status, out, err = run(capsys, "audit", "verify")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "Checked 2 disputes, 7 events.",
        "Every hash chain is intact: no event edited, deleted, inserted or reordered.",
    ]
    assert second != five_events


@pytest.mark.parametrize("how", list(TAMPERING))
def test_audit_verify_names_each_event_tampered_with_in_the_database_and_fails(
    how: str,
    any_core: Core,
    five_events: str,
    cli: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    untouched = open_dispute(any_core, case_ref="CS-300001")
    tamper, expected = TAMPERING[how]
    tamper(any_core, five_events)

    status, out, err = run(capsys, "audit", "verify")

    assert status == 1
    assert err == ""
    broken = [line for line in out.splitlines() if line.startswith("BROKEN ")]
    assert broken == [f"BROKEN {five_events}: {text}" for text in expected]
    assert untouched not in out
    count = len(expected)
    assert out.splitlines()[-1] == (
        f"The record has been altered: {count} problem{'s' if count > 1 else ''} in 1 dispute."
    )


def test_an_event_edited_with_its_hash_recomputed_is_caught_by_the_next_event(
    any_core: Core, five_events: str, cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    did = dispute_id(any_core, five_events)
    note = events(any_core, five_events)[3]
    data = {**note.data, "text": "Called school; all is well."}
    rehashed = event_hash(note.prev_hash, five_events, 4, note.type, note.at, note.actor, data)
    with any_core.store.engine.begin() as conn:
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == did, EventRow.seq == 4)
            .values(data=data, hash=rehashed)
        )
    status, out, _ = run(capsys, "audit", "verify")
    assert status == 1
    assert (
        f"BROKEN {five_events}: event #4 (NoteAdded, Thu 26 Nov 2026 11:00) was edited and its "
        "hash recomputed: event #5 still points back to the original"
    ) in out.splitlines()


def test_saved_heads_catch_events_cut_from_the_end_of_a_chain(
    any_core: Core,
    five_events: str,
    cli: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    heads = tmp_path / "heads.json"
    status, out, _ = run(capsys, "audit", "verify", "--heads", str(heads))
    assert status == 0 and heads.exists()
    did = dispute_id(any_core, five_events)
    with any_core.store.engine.begin() as conn:
        conn.execute(delete(EventRow).where(EventRow.dispute_id == did, EventRow.seq == 5))

    # The chain alone still verifies: nothing points at the last event.
    assert run(capsys, "audit", "verify")[0] == 0
    status, out, _ = run(capsys, "audit", "verify", "--heads", str(heads))

    assert status == 1
    assert (
        f"BROKEN {five_events}: event #5, the last when the heads were saved, is no longer in "
        "the record as it was: events were deleted from the end, or the chain was rewritten"
    ) in out.splitlines()


# --- export of a dispute's record ---------------------------------------------------------------


@pytest.fixture
def escalated(any_core: Core, clock: FakeClock) -> str:
    """Ben acknowledges, misses his deadline (Tue 1 Dec 17:00), Amara escalates Wed 2 Dec 17:00."""
    ref = open_dispute(
        any_core,
        reasons="Bruising seen at school. <script>alert('x')</script> & <b>no</b> follow-up.",
    )
    act(any_core, ref, "ben.carter", Action.ACKNOWLEDGE)
    clock.set(at(30, 14, month=11))
    act(
        any_core,
        ref,
        "amara.okafor",
        Action.ADD_NOTE,
        text="Phoned Ben Carter.\nHe will check the health record.",
        with_whom="Ben Carter",
    )
    clock.set(at(2, 9))
    any_core.service.tick()
    clock.set(at(2, 17))
    act(any_core, ref, "amara.okafor", Action.ESCALATE, reason="No reply from health.")
    return ref


def test_export_as_markdown_gives_the_chronology_deadlines_policy_and_verification(
    any_core: Core, escalated: str, cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "export", escalated, "--format", "md", "--as", "amara.okafor")

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"# Record of professional disagreement {escalated}"
    amara = f"Amara Okafor ({CWC})"
    chronology = lines[lines.index("## Chronology") + 2 : lines.index("## Agreed outcome") - 1]
    headings = [line for line in chronology if line.startswith("- **")]
    assert headings == [
        f"- **Thu 26 Nov, 10:00** (#1) Disagreement logged at stage 1 under WST Escalation Policy v3, 03/03/2023 - {amara}",
        f"- **Thu 26 Nov, 10:00** (#2) Deadline met: Raise the disagreement with the other practitioner, verbally and in writing, with evidence-based reasons - {amara}",
        f"- **Thu 26 Nov, 10:00** (#3) Acknowledged for {RWT} at stage 1 - Ben Carter ({RWT})",
        f"- **Mon 30 Nov, 14:00** (#4) Discussion recorded - {amara}",
        "- **Wed 2 Dec, 09:00** (#5) Reminder sent: Read the case file, speak to the disputing practitioner and seek a mutually agreeable way forward - the bot",
        "- **Wed 2 Dec, 09:00** (#6) Due today: Read the case file, speak to the disputing practitioner and seek a mutually agreeable way forward - the bot",
        "- **Wed 2 Dec, 09:00** (#7) Deadline missed: Read the case file, speak to the disputing practitioner and seek a mutually agreeable way forward - the bot",
        f"- **Wed 2 Dec, 17:00** (#8) Escalated from stage 1 to stage 2 (Line managers and safeguarding leads) - {amara}",
    ]
    assert "  - With: Ben Carter" in chronology
    assert "    > Phoned Ben Carter." in chronology
    assert "  - Reason: No reply from health." in chronology
    assert (
        "| 1 | Read the case file, speak to the disputing practitioner and seek a mutually "
        "agreeable way forward | missed: due Tue 1 Dec, 17:00 |"
    ) in lines
    assert (
        "| Policy | Wolverhampton Safeguarding Together, WST Escalation Policy v3, 03/03/2023 "
        f"(fingerprint {any_core.partnership.policy.fingerprint}) |"
    ) in lines
    assert "Verified: all 8 events match their hashes and are chained in order." in lines
    assert "This export is itself recorded on the dispute as event #9." in lines
    # What was typed is shown literally, never as HTML.
    assert "<script>" not in out and "<b>" not in out
    assert (
        "> Bruising seen at school. \\<script\\>alert('x')\\</script\\> \\& \\<b\\>no\\</b\\> "
        "follow-up."
    ) in lines


def test_export_as_html_escapes_what_users_typed(
    any_core: Core,
    escalated: str,
    cli: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    target = tmp_path / "record.html"
    status, out, err = run(
        capsys, "export", escalated, "--format", "html", "--as", "tom.hadley", "--out", str(target)
    )
    assert (status, err) == (0, "")
    assert out == f"Written to {target}.\n"
    page = target.read_text(encoding="utf-8")
    assert "<script" not in page and "<b>" not in page
    assert (
        "Bruising seen at school. &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; "
        "&lt;b&gt;no&lt;/b&gt; follow-up."
    ) in page
    assert (
        '<li value="8"><span class="when">Wed 2 Dec, 17:00</span> Escalated from stage 1 to '
        "stage 2 (Line managers and safeguarding leads)"
    ) in page
    assert '<td class="missed">missed: due Tue 1 Dec, 17:00</td>' in page
    assert "Verified: all 8 events match their hashes and are chained in order." in page
    assert "default-src 'none'" in page  # and, should escaping ever fail, no script may run


def test_every_export_is_itself_an_event_saying_by_whom_and_when(
    any_core: Core, escalated: str, cli: None, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    clock.set(at(3, 9, 15))
    assert run(capsys, "export", escalated, "--as", "amara.okafor")[0] == 0
    assert run(capsys, "export", escalated, "--format", "html", "--as", "helen.marsh")[0] == 0

    exported = events(any_core, escalated, "RecordExported")
    assert [(e.actor, e.at, e.data["format"], e.data["via"]) for e in exported] == [
        ("amara.okafor", at(3, 9, 15), "md", "cli"),
        ("helen.marsh", at(3, 9, 15), "html", "cli"),
    ]
    assert all(e.data["verified"] for e in exported)
    # The exports keep the chain whole.
    assert run(capsys, "audit", "verify")[0] == 0


def test_export_by_someone_not_involved_is_refused_and_the_refusal_recorded(
    any_core: Core, escalated: str, cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "export", escalated, "--as", "dan.fielding")

    assert (status, out) == (1, "")
    assert err == (
        f"Sorry, you can't have the record of {escalated}: only the people involved in this "
        "dispute can see or add to it.\n"
    )
    assert events(any_core, escalated, "RecordExported") == []
    (refused,) = events(any_core, escalated, "ActionRefused")
    assert (refused.actor, refused.data["action"]) == ("dan.fielding", "view")


def test_export_of_an_unknown_dispute_or_by_an_unknown_person_says_so(
    any_core: Core, escalated: str, cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "export", "WST-2026-0999", "--as", "amara.okafor") == (
        1,
        "",
        "There is no dispute with reference WST-2026-0999.\n",
    )
    assert run(capsys, "export", escalated, "--as", "nobody.here") == (
        1,
        "",
        "Nobody in the partnership directory has the id 'nobody.here'.\n",
    )


def test_export_as_pdf_prints_the_record_with_headless_chromium(
    any_core: Core,
    escalated: str,
    cli: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    assert shutil.which("chromium"), "Chromium is missing: run scripts/ensure-chromium.sh"
    status, out, err = run(capsys, "export", escalated, "--format", "pdf", "--as", "amara.okafor")

    assert (status, err) == (0, "")
    target = tmp_path / f"{escalated}.pdf"
    assert out == f"Written to {target.name}.\n"
    pdf = target.read_bytes()
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5000
    (exported,) = events(any_core, escalated, "RecordExported")
    assert exported.data["format"] == "pdf"


def test_export_as_pdf_without_chromium_says_what_to_install_and_records_nothing(
    any_core: Core,
    escalated: str,
    cli: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CHROMIUM_PATH", raising=False)

    status, out, err = run(capsys, "export", escalated, "--format", "pdf", "--as", "amara.okafor")

    assert (status, out) == (1, "")
    assert "PDF export needs Chromium" in err
    assert "apt-get install chromium" in err
    assert "--format html" in err
    assert events(any_core, escalated, "RecordExported") == []


# --- "Send me the record" in chat --------------------------------------------------------------


def outbox(core: Core) -> list[Message]:
    with core.store.unit() as session:
        rows = session.execute(select(OutboxRow).order_by(OutboxRow.id)).scalars().all()
        return [Message.from_data(r.payload) for r in rows]


def test_send_me_the_record_delivers_it_privately_to_someone_allowed_to_see_it(
    any_core: Core, escalated: str
) -> None:
    conversations = Conversations(any_core.service)
    tom = any_core.service.directory.person("tom.hadley")
    before = len(outbox(any_core))

    outcome = conversations.run_action(escalated, tom, ActionId.SEND_RECORD, {})

    assert outcome.ok
    assert outcome.text == (
        f"I've sent you the record of {escalated} in a direct message. Please keep it private "
        "and place it on the child's or adult's file."
    )
    sent = outbox(any_core)[before:]
    assert sent and {(m.recipient.kind, m.recipient.id, m.kind) for m in sent} == {
        ("person", "tom.hadley", "direct")
    }
    assert sent[0].text.startswith(f"The record of {escalated}, as of Wed 2 Dec 2026, 17:00.")
    facts = dict(f for m in sent for f in m.facts)
    assert facts["Reasons"].startswith("Bruising seen at school. <script>")  # adapters escape
    assert facts["Wed 2 Dec, 17:00 (#8)"].startswith(
        "Escalated from stage 1 to stage 2 (Line managers and safeguarding leads)"
    )
    assert (
        facts["Verification"]
        == "Verified: all 8 events match their hashes and are chained in order."
    )
    (exported,) = events(any_core, escalated, "RecordExported")
    assert (exported.actor, exported.data["via"]) == ("tom.hadley", "chat")


def test_send_me_the_record_is_refused_to_someone_not_involved(
    any_core: Core, escalated: str
) -> None:
    conversations = Conversations(any_core.service)
    dan = any_core.service.directory.person("dan.fielding")
    before = len(outbox(any_core))

    outcome = conversations.run_action(escalated, dan, ActionId.SEND_RECORD, {})

    assert not outcome.ok
    assert outcome.text == (
        f"Sorry, you can't have the record of {escalated}: only the people involved in this "
        "dispute can see or add to it."
    )
    assert outbox(any_core)[before:] == []
    assert events(any_core, escalated, "RecordExported") == []


def test_a_long_record_is_sent_in_parts_within_the_platforms_limits(
    any_core: Core, escalated: str, clock: FakeClock
) -> None:
    for n in range(12):
        clock.advance(timedelta(minutes=5))
        act(any_core, escalated, "tom.hadley", Action.ADD_NOTE, text=f"Note {n}: " + "x" * 2900)
    conversations = Conversations(any_core.service)
    before = len(outbox(any_core))

    outcome = conversations.run_action(
        escalated, any_core.service.directory.person("amara.okafor"), ActionId.SEND_RECORD, {}
    )

    assert outcome.ok
    sent = [m for m in outbox(any_core)[before:] if m.recipient.id == "amara.okafor"]
    assert len(sent) > 1
    assert [m.text.endswith(f"(part {n} of {len(sent)})") for n, m in enumerate(sent, 1)] == [
        True
    ] * len(sent)
    for message in sent:
        assert len(message.facts) <= 20
        assert sum(len(a) + len(b) for a, b in message.facts) <= 12000
        assert all(len(value) <= 2000 for _, value in message.facts)
    notes = "".join(v for m in sent for k, v in m.facts)
    assert notes.count("x" * 100) >= 12 * 29  # nothing of the notes was cut


def test_the_send_me_the_record_button_is_offered_to_those_who_may_see_the_dispute(
    any_core: Core, escalated: str
) -> None:
    conversations = Conversations(any_core.service)
    directory = any_core.service.directory
    reply = conversations.status_reply(escalated, directory.person("amara.okafor"))
    assert ActionId.SEND_RECORD in [b.action for b in reply.buttons]
    assert [b.label for b in reply.buttons if b.action == ActionId.SEND_RECORD] == [
        "Send me the record"
    ]
    refused = conversations.status_reply(escalated, directory.person("dan.fielding"))
    assert not refused.ok and refused.buttons == []


# --- the board report ------------------------------------------------------------------------


@pytest.fixture
def board(any_core: Core, clock: FakeClock) -> dict[str, str]:
    """Three disputes closed from Thu 26 Nov to Thu 3 Dec, one still open, one closed after.

    A: Children's Social Care with health, threshold, resolved at stage 1 on Fri 27 Nov (one
       working day after the disagreement), with a learning point.
    B: Police with Children's Social Care, information sharing: the stage 1 deadline is missed
       (breach Wed 2 Dec 09:00), it escalates automatically at 11:00, a reason for delay is
       recorded, and line managers resolve it at stage 2 on Thu 3 Dec (five working days).
    C: Children's Social Care with health, threshold, withdrawn Fri 27 Nov.
    D: Probation with the school, still open. E: withdrawn Fri 4 Dec, after the period.
    """
    s = any_core.service
    a = open_dispute(any_core)
    b = open_dispute(
        any_core,
        raised_by="dan.fielding",
        raising_agency="wmp",
        receiving_agency="cwc-childrens",
        receiving_person="priya.nair",
        category="information-sharing",
    )
    c = open_dispute(any_core, receiving_person="chloe.evans")
    d = open_dispute(
        any_core,
        raised_by="ellie.shaw",
        raising_agency="probation",
        receiving_agency="oakfield-academy",
        receiving_person="lucy.bennett",
    )
    e = open_dispute(any_core, receiving_person="chloe.evans", category="other")
    act(any_core, a, "ben.carter", Action.ACKNOWLEDGE)
    clock.set(at(27, 10, month=11))
    act(
        any_core,
        a,
        "ben.carter",
        Action.PROPOSE_RESOLUTION,
        outcome="Strategy discussion on Monday.",
        actions=[("Share the health record", "ben.carter", date(2026, 12, 4))],
    )
    act(any_core, a, "amara.okafor", Action.RESPOND_TO_RESOLUTION, confirm=True)
    act(
        any_core,
        a,
        "amara.okafor",
        Action.RECORD_LEARNING,
        text="Share the school's injury reports with health the same day.",
    )
    clock.set(at(27, 11, month=11))
    act(any_core, c, "amara.okafor", Action.WITHDRAW, reason="Sorted out by phone.")
    clock.set(at(2, 9))
    s.tick()
    clock.set(at(2, 11))
    s.tick()
    clock.set(at(2, 12))
    act(
        any_core,
        b,
        "dan.fielding",
        Action.RECORD_DELAY_REASON,
        reason="Waiting for the GP's chronology.",
        safety_confirmed=True,
    )
    clock.set(at(3, 10))
    act(
        any_core,
        b,
        "sarah.oconnell",
        Action.PROPOSE_RESOLUTION,
        outcome="Information shared under the protocol.",
        actions=[],
    )
    act(any_core, b, "tom.hadley", Action.RESPOND_TO_RESOLUTION, confirm=True)
    clock.set(at(4, 10))
    act(any_core, e, "amara.okafor", Action.WITHDRAW, reason="Raised in error.")
    clock.set(at(7, 9))
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def test_the_board_report_counts_the_disputes_closed_in_the_period(
    any_core: Core, board: dict[str, str]
) -> None:
    report = Archive(any_core.service).report(date(2026, 11, 26), date(2026, 12, 3))

    assert [c.ref for c in report.cases] == [board["a"], board["c"], board["b"]]
    assert report.total == 3 and report.resolved == 2
    assert [(c.label, c.count) for c in report.by_category] == [
        ("Threshold for action", 2),
        ("Sharing information or providing services", 1),
    ]
    assert [(c.label, c.count) for c in report.by_agency_pair] == [
        (f"{CWC} → {RWT}", 2),
        (f"{WMP} → {CWC}", 1),
    ]
    assert [(c.label, c.count) for c in report.resolved_at_stage] == [
        ("Stage 1: Practitioners", 1),
        ("Stage 2: Line managers and safeguarding leads", 1),
        ("Stage 3: Service and senior managers", 0),
        ("Stage 4: WST agency representatives", 0),
    ]
    assert [(c.label, c.count) for c in report.by_outcome] == [
        ("Resolved", 2),
        ("Withdrawn", 1),
        ("Closed without agreement", 0),
    ]
    assert [(r.stage, r.reached, r.breached) for r in report.breach_rates] == [
        (1, 3, 1),
        (2, 1, 0),
        (3, 0, 0),
        (4, 0, 0),
    ]
    assert report.case(board["a"]).working_days == 1
    assert report.case(board["b"]).working_days == 5
    assert report.median_working_days == 3
    assert report.past_overall_target == 0
    assert [(n.ref, n.text, n.safety_confirmed, n.agency) for n in report.delay_reasons] == [
        (board["b"], "Waiting for the GP's chronology.", True, WMP)
    ]
    assert [(n.ref, n.text, n.agency) for n in report.learning] == [
        (board["a"], "Share the school's injury reports with health the same day.", CWC)
    ]


def test_the_board_report_as_csv_parses_with_the_figures(
    any_core: Core, board: dict[str, str], cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        capsys, "report", "--from", "2026-11-26", "--to", "03/12/2026", "--format", "csv"
    )
    assert (status, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    table = {(r["section"], r["item"]): r for r in rows}

    def figures(section: str, item: str) -> tuple[str, str, str]:
        row = table[(section, item)]
        return row["count"], row["out_of"], row["percent"]

    assert table[("period", "from")]["text"] == "2026-11-26"
    assert table[("period", "to")]["text"] == "2026-12-03"
    assert figures("summary", "Disputes closed") == ("3", "", "")
    assert figures("summary", "Resolved") == ("2", "3", "67%")
    assert table[("summary", "Median working days to resolution")]["text"] == "3"
    assert figures("by category", "Threshold for action") == ("2", "3", "67%")
    assert figures("by agency pair", f"{WMP} → {CWC}") == ("1", "3", "33%")
    assert figures("resolved at stage", "Stage 2: Line managers and safeguarding leads") == (
        "1",
        "2",
        "50%",
    )
    assert figures("outcome", "Withdrawn") == ("1", "3", "33%")
    assert figures("breach rate", "Stage 1: Practitioners") == ("1", "3", "33%")
    assert figures("breach rate", "Stage 3: Service and senior managers") == ("0", "0", "-")
    assert table[("delay reason", board["b"])]["text"] == "Waiting for the GP's chronology."
    assert table[("learning point", board["a"])]["text"] == (
        "Share the school's injury reports with health the same day."
    )
    assert {r["item"] for r in rows if r["section"] == "by category"} == {
        "Threshold for action",
        "Sharing information or providing services",
    }


def test_the_board_report_as_markdown_has_every_section(
    any_core: Core, board: dict[str, str], cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        capsys, "report", "--from", "2026-11-26", "--to", "2026-12-03", "--format", "md"
    )
    assert status == 0
    lines = out.splitlines()
    for heading in (
        "## Summary",
        "## By category",
        "## By agency pair",
        "## Resolved at stage",
        "## Outcome",
        "## Deadlines missed, by stage",
        "## Reasons for delay",
        "## Learning points (action log)",
    ):
        assert heading in lines
    assert "| Median working days from the disagreement to resolution | 3 |" in lines
    assert "| Stage 1: Practitioners | 3 | 1 | 33% |" in lines
    assert (
        f"| {board['b']} | {WMP} → {CWC} | Wed 2 Dec 2026 | Waiting for the GP's chronology. | yes |"
        in lines
    )


def test_the_report_refuses_a_period_that_ends_before_it_starts(
    cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "report", "--from", "2026-12-03", "--to", "2026-11-26") == (
        2,
        "",
        "The period ends before it starts: --to must be on or after --from.\n",
    )
    status, _, err = run(capsys, "report", "--from", "last week", "--to", "2026-11-26")
    assert status == 2 and "'last week' is not a date" in err


# --- the HTML report in headless Chromium --------------------------------------------------------


def png_pixels(data: bytes, *, max_rows: int | None = None) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB pixels of an 8-bit PNG's first rows (enough for a screenshot)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    pixels: list[bytes] = []
    previous = bytes(stride)
    for y in range(min(height, max_rows or height)):
        kind = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        if kind == 0 or (kind == 2 and not any(line)):
            line = line if kind == 0 else previous
        elif kind == 2:
            line = bytes((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        else:
            out = bytearray(line)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                up = previous[i]
                if kind == 1:
                    out[i] = (out[i] + left) & 0xFF
                elif kind == 3:
                    out[i] = (out[i] + (left + up) // 2) & 0xFF
                else:
                    corner = previous[i - bpp] if i >= bpp else 0
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                    out[i] = (out[i] + pred) & 0xFF
            line = bytes(out)
        pixels += [line[i : i + 3] for i in range(0, stride, bpp)]
        previous = line
    return width, height, pixels


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_the_html_report_renders_in_headless_chromium_with_its_charts(
    any_core: Core,
    board: dict[str, str],
    cli: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    chromium = shutil.which("chromium")
    assert chromium, (
        "Chromium is missing: run scripts/ensure-chromium.sh (apt-get install chromium)"
    )
    page = tmp_path / "report.html"
    status, _, _ = run(
        capsys, "report", "--from", "2026-11-26", "--to", "2026-12-03", "--out", str(page)
    )
    assert status == 0
    profile = f"--user-data-dir={tmp_path / 'profile'}"

    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, profile, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for text in (
        "<h1>Board report: professional disagreements</h1>",
        '<span class="figure">3</span>Disputes closed',
        '<span class="figure">3</span>Median working days from the disagreement to resolution',
        "<h2>Deadlines missed, by stage</h2>",
        "1 of 3 (33%)",
        "Waiting for the GP's chronology.",
        "Share the school's injury reports with health the same day.",
    ):
        assert text in dom, text
    assert dom.count("<svg") == 5

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            profile,
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert 20_000 < len(data) < 5_000_000
    # The summary and the charts are in the top half of the page.
    width, height, pixels = png_pixels(data, max_rows=800)
    assert (width, height) == (1200, 1600)
    white = sum(1 for p in pixels if p == b"\xff\xff\xff")
    assert white < 0.97 * len(pixels)  # not a blank page
    # The charts drew: bars in the report's blue and the breach chart's red.
    assert pixels.count(bytes([0x1D, 0x70, 0xB8])) > 2000
    assert pixels.count(bytes([0xD4, 0x35, 0x1C])) > 500


# --- retention --------------------------------------------------------------------------------


def test_retention_dry_run_lists_what_would_go_and_changes_nothing(
    any_core: Core,
    board: dict[str, str],
    cli: None,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert any_core.partnership.config.retention_days == 2190
    before = {ref: events(any_core, ref) for ref in board.values()}
    clock.set(at(3, 18) + timedelta(days=2190))  # six years after B closed; E closed later

    status, out, err = run(capsys, "retention", "--dry-run")

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert (
        lines[0] == "3 disputes past the retention period of 2190 days. Dry run: nothing changed."
    )
    assert [line.split(" ")[2] for line in lines[1:]] == [board["a"], board["c"], board["b"]]
    assert lines[1] == (
        f"  {board['a']} (closed Fri 27 Nov 2026): would remove the case reference, the decision "
        "disputed, the reasons, the outcome sought, outcomes, agreed action descriptions from 2 "
        "events (names taken out of learning points and reasons for delay); statistics kept."
    )
    assert {ref: events(any_core, ref) for ref in board.values()} == before


def test_retention_removes_personal_details_keeps_statistics_and_the_chain_verifies(
    any_core: Core,
    board: dict[str, str],
    cli: None,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = Archive(any_core.service)
    a = board["a"]
    act(
        any_core,
        a,
        "amara.okafor",
        Action.ADD_NOTE,
        text="Spoke to Ben Carter about CS-204611.",
        with_whom="Ben Carter",
    )
    act(
        any_core,
        a,
        "amara.okafor",
        Action.RECORD_LEARNING,
        text="Ben Carter and the school should share CS-204611 reports sooner.",
    )
    report_before = archive.report(date(2026, 11, 26), date(2026, 12, 3))
    clock.set(at(3, 18) + timedelta(days=2190))

    status, out, err = run(capsys, "retention", "--as", "helen.marsh")

    assert (status, err) == (0, "")
    assert out.splitlines()[0] == (
        "3 disputes past the retention period of 2190 days. Done, and recorded on each dispute."
    )
    # The details are gone from the events and the dispute's state...
    (opened,) = events(any_core, a, "DisputeOpened")
    assert {k: opened.data[k] for k in ("case_ref", "decision", "reasons", "outcome_sought")} == {
        "case_ref": REMOVED,
        "decision": REMOVED,
        "reasons": REMOVED,
        "outcome_sought": REMOVED,
    }
    notes = events(any_core, a, "NoteAdded")
    assert [(n.data["text"], n.data["with_whom"]) for n in notes] == [(REMOVED, REMOVED)]
    learning = [e.data["text"] for e in events(any_core, a, "LearningRecorded")]
    assert learning[1] == (
        "[name removed] and the school should share [case reference removed] reports sooner."
    )
    (proposed,) = events(any_core, a, "ResolutionProposed")
    assert proposed.data["outcome"] == REMOVED
    assert proposed.data["actions"][0]["description"] == REMOVED
    assert proposed.data["actions"][0]["owner"] == "ben.carter"
    did = dispute_id(any_core, a)
    with any_core.store.unit() as session:
        state = session.execute(select(DisputeRow.state).where(DisputeRow.ref == a)).scalar_one()
        messages = session.execute(
            select(OutboxRow.payload).where(OutboxRow.dispute_id == did)
        ).all()
    assert state["details"]["case_ref"] == REMOVED
    assert state["resolution"]["outcome"] == REMOVED
    assert "CS-204611" not in str(state) and "Ben Carter" not in str(state)
    assert messages == []  # the outbox's copies are gone too
    # ...the retention is on the record, by whom and when...
    (removed,) = events(any_core, a, "PersonalDetailsRemoved")
    assert (removed.actor, removed.at, removed.data["retention_days"]) == (
        "helen.marsh",
        at(3, 18) + timedelta(days=2190),
        2190,
    )
    assert [item["seq"] for item in removed.data["events"]] == [
        opened.seq,
        proposed.seq,
        notes[0].seq,
        events(any_core, a, "LearningRecorded")[1].seq,
    ]
    # ...the statistics are as they were...
    report_after = archive.report(date(2026, 11, 26), date(2026, 12, 3))
    assert report_after.by_category == report_before.by_category
    assert report_after.by_agency_pair == report_before.by_agency_pair
    assert report_after.resolved_at_stage == report_before.resolved_at_stage
    assert report_after.by_outcome == report_before.by_outcome
    assert report_after.breach_rates == report_before.breach_rates
    assert report_after.median_working_days == report_before.median_working_days == 3
    assert [n.text for n in report_after.delay_reasons] == ["Waiting for the GP's chronology."]
    # ...and every chain still verifies, the redacted events against their recorded hashes.
    status, out, _ = run(capsys, "audit", "verify")
    assert status == 0
    assert out.splitlines()[-1] == (
        "Every hash chain is intact: no event edited, deleted, inserted or reordered "
        "(8 redacted under the retention policy, as recorded)."
    )
    # Nothing is left to do a second time; the dispute still open is untouched.
    assert run(capsys, "retention")[1].startswith("No dispute was closed more than 2190 days ago")
    assert events(any_core, board["d"], "DisputeOpened")[0].data["case_ref"] == "CS-204611"
    assert events(any_core, board["e"], "DisputeOpened")[0].data["case_ref"] == "CS-204611"


def test_a_redacted_event_edited_afterwards_is_still_caught(
    any_core: Core,
    board: dict[str, str],
    cli: None,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock.set(at(3, 18) + timedelta(days=2190))
    assert run(capsys, "retention")[0] == 0
    a = board["a"]
    (opened,) = events(any_core, a, "DisputeOpened")
    did = dispute_id(any_core, a)
    with any_core.store.engine.begin() as conn:
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == did, EventRow.seq == opened.seq)
            .values(data={**opened.data, "case_ref": "CS-999999"})
        )
    status, out, _ = run(capsys, "audit", "verify")
    assert status == 1
    assert [line for line in out.splitlines() if line.startswith("BROKEN")] == [
        f"BROKEN {a}: event #1 (DisputeOpened, Thu 26 Nov 2026 10:00) was edited: its content "
        "no longer matches its hash"
    ]


def test_retention_leaves_a_dispute_whose_record_fails_verification_and_says_why(
    any_core: Core,
    board: dict[str, str],
    cli: None,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (opened,) = events(any_core, board["c"], "DisputeOpened")
    did = dispute_id(any_core, board["c"])
    with any_core.store.engine.begin() as conn:
        conn.execute(
            update(EventRow)
            .where(EventRow.dispute_id == did, EventRow.seq == 1)
            .values(data={**opened.data, "category": "other"})
        )
    clock.set(at(3, 18) + timedelta(days=2190))

    status, out, _ = run(capsys, "retention")

    assert status == 1
    assert (
        f"  {board['c']} (closed Fri 27 Nov 2026): NOT done: its record fails verification; "
        "investigate with `escalation-bot audit verify` first."
    ) in out.splitlines()
    assert events(any_core, board["c"], "DisputeOpened")[0].data["case_ref"] == "CS-204611"
    assert events(any_core, board["a"], "DisputeOpened")[0].data["case_ref"] == REMOVED


def test_retention_by_someone_who_is_not_an_admin_is_refused(
    board: dict[str, str], cli: None, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    clock.set(at(3, 18) + timedelta(days=2190))
    assert run(capsys, "retention", "--as", "amara.okafor") == (
        1,
        "",
        "Only a partnership admin can run retention; 'amara.okafor' is not one.\n",
    )
