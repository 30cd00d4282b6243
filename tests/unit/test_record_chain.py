"""The record's pure side: chain verification on hand-built chains, redaction that keeps the
chain verifiable, Markdown escaping, name scrubbing, and the CSV formula guard."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.records import (
    GENESIS,
    REDACTION_EVENT,
    REMOVED,
    NameScrubber,
    RecordedEvent,
    check_heads,
    heads_of,
    md_escape,
    plan_redaction,
    verify_chain,
)
from bot.report import number, percent, report_csv
from store import repository
from store.repository import event_hash

REF = "WST-2026-0042"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def chain(*items: tuple[str, dict[str, Any]]) -> list[RecordedEvent]:
    """Events hashed and linked exactly as the store does it."""
    out: list[RecordedEvent] = []
    prev = GENESIS
    for n, (kind, data) in enumerate(items, start=1):
        at = T0 + timedelta(hours=n - 1)
        digest = event_hash(prev, REF, n, kind, at, "amara.okafor", data)
        out.append(RecordedEvent(n, kind, at, "amara.okafor", data, prev, digest, row_id=n))
        prev = digest
    return out


def six() -> list[RecordedEvent]:
    return chain(
        ("DisputeOpened", {"case_ref": "CS-1", "decision": "Closed.", "reasons": "Bruises."}),
        ("Acknowledged", {"side": "receiving", "stage": 1}),
        ("NoteAdded", {"text": "Spoke to Ben Carter.", "with_whom": "Ben Carter", "stage": 1}),
        ("NoteAdded", {"text": "Agreed a meeting.", "stage": 1}),
        ("LearningRecorded", {"text": "Ben Carter and CS-1: share sooner."}),
        ("DisputeClosed", {"reason": "Resolved by phone."}),
    )


def texts(events: list[RecordedEvent]) -> list[str]:
    return [f.text for f in verify_chain(REF, events, event_hash).findings]


def test_the_domain_starts_chains_where_the_store_does() -> None:
    assert GENESIS == repository.GENESIS


def test_an_untouched_chain_verifies_and_reports_its_head() -> None:
    events = six()
    check = verify_chain(REF, events, event_hash)
    assert check.ok and check.events == 6 and check.redacted == 0
    assert check.head == (6, events[-1].hash)
    assert check.summary() == "Verified: all 6 events match their hashes and are chained in order."


def test_a_deletion_closed_up_by_renumbering_is_named_as_both() -> None:
    events = six()
    del events[2]
    events = [e if e.seq < 3 else replace(e, seq=e.seq - 1) for e in events]
    assert texts(events) == [
        "event #3 is missing: it was deleted (the record goes from #2 to #4)",
        "events #3 to #5 were renumbered: they were recorded as #4 to #6",
    ]


def test_a_changed_last_event_may_also_have_been_added_by_hand() -> None:
    events = six()
    events[-1] = replace(events[-1], data={"reason": "Never mind."})
    assert texts(events) == [
        "event #6 (DisputeClosed, Thu 26 Nov 2026 15:00) was edited (or it was added by hand): "
        "its content no longer matches its hash"
    ]


def test_a_chain_whose_first_event_is_gone_says_so() -> None:
    assert texts(six()[1:]) == ["event #1 is missing: it was deleted"]


def test_no_events_at_all_is_a_deleted_record() -> None:
    (finding,) = verify_chain(REF, [], event_hash).findings
    assert finding.kind == "deleted" and str(finding) == (
        f"{REF}: has no events at all: its whole record was deleted"
    )


def redacted(events: list[RecordedEvent]) -> list[RecordedEvent]:
    """What retention does: new content for the redacted events, then the redaction event."""
    scrub = NameScrubber(["Ben Carter"], ["CS-1"])
    plan = plan_redaction(REF, events, event_hash, scrub)
    by_seq = {r.seq: r.data for r in plan}
    out = [replace(e, data=by_seq.get(e.seq, e.data)) for e in events]
    last = out[-1]
    data = {"events": [r.entry() for r in plan], "retention_days": 2190}
    at = last.at + timedelta(days=2190)
    digest = event_hash(last.hash, REF, last.seq + 1, REDACTION_EVENT, at, None, data)
    return [*out, RecordedEvent(last.seq + 1, REDACTION_EVENT, at, None, data, last.hash, digest)]


def test_redacted_events_verify_against_the_hashes_the_redaction_recorded() -> None:
    events = redacted(six())
    check = verify_chain(REF, events, event_hash)
    assert check.ok, check.findings
    assert check.redacted == 5
    assert events[0].data == {"case_ref": REMOVED, "decision": REMOVED, "reasons": REMOVED}
    assert events[2].data["with_whom"] == REMOVED
    assert events[3].data == {"text": REMOVED, "stage": 1}
    assert events[4].data["text"] == "[name removed] and [case reference removed]: share sooner."
    assert events[5].data == {"reason": REMOVED}
    assert events[1].data == {"side": "receiving", "stage": 1}  # nothing personal: untouched


def test_without_the_redaction_event_the_redacted_events_read_as_edited() -> None:
    events = redacted(six())[:-1]
    assert [f.seq for f in verify_chain(REF, events, event_hash).findings] == [1, 3, 4, 5, 6]


def test_a_redaction_record_altered_afterwards_is_caught() -> None:
    events = redacted(six())
    forged = dict(events[-1].data)
    forged["events"] = [{**forged["events"][0], "redacted_hash": "0" * 64}, *forged["events"][1:]]
    events[-1] = replace(events[-1], data=forged)
    # Trusted no more, it explains nothing: every event it covered reads as edited too.
    assert [f.seq for f in verify_chain(REF, events, event_hash).findings] == [1, 3, 4, 5, 6, 7]


def test_heads_saved_earlier_catch_a_chain_cut_back() -> None:
    events = six()
    saved = heads_of([verify_chain(REF, events, event_hash)])
    assert check_heads([verify_chain(REF, events, event_hash)], saved) == []
    (finding,) = check_heads([verify_chain(REF, events[:4], event_hash)], saved)
    assert finding.seq == 6 and "deleted from the end" in finding.text
    (gone,) = check_heads([], saved)
    assert gone.text == "the whole dispute was deleted since the heads were saved"


def test_markdown_escaping_shows_markup_literally() -> None:
    text = "# Title\n<img src=x onerror=alert(1)> [link](http://example.org) *bold* | pipe\n1. item"
    assert md_escape(text).split("\n") == [
        "\\# Title",
        "\\<img src=x onerror=alert(1)\\> \\[link\\](http://example.org) \\*bold\\* \\| pipe",
        "1\\. item",
    ]


def test_names_are_scrubbed_whole_and_whatever_their_case() -> None:
    scrub = NameScrubber(["Ben Carter", "Al"], ["CS-204611"])
    assert scrub("BEN CARTER met Benjamin Carterton about cs-204611.") == (
        "[name removed] met Benjamin Carterton about [case reference removed]."
    )
    assert scrub("Also, Al said") == "Also, Al said"  # names under three letters are left


def test_report_numbers_and_shares_read_plainly() -> None:
    assert (number(3.0), number(2.5), number(None)) == ("3", "2.5", "-")
    assert (percent(1, 3), percent(2, 3), percent(0, 0)) == ("33%", "67%", "-")


def test_csv_cells_that_look_like_formulas_are_kept_as_text() -> None:
    from datetime import date

    from bot.report import BoardReport, Note, ReportCase

    case = ReportCase(
        ref=REF,
        category="Threshold",
        raising_agency="A",
        receiving_agency="B",
        opened_at=T0,
        closed_at=T0,
        outcome="Resolved",
        resolved_at_stage=1,
        stages_reached=(1,),
        breached_stages=(),
        working_days=1,
        overall_target_breached=False,
        delay_reasons=(),
        learning=(Note(REF, T0, "A", '=HYPERLINK("http://example.org")'),),
    )
    report = BoardReport(
        "P", "Policy", date(2026, 11, 1), date(2026, 11, 30), T0, "Europe/London", (case,),
        (), (), (), (), (), 1.0, 0, (), case.learning,
    )  # fmt: skip
    assert "'=HYPERLINK" in report_csv(report)
