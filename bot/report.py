"""The board report: the disputes closed in a period, by category, agency pair, stage resolved
at and outcome; the breach rate per stage; median working days to resolution; reasons for
delay; and the learning points (the action log). Rendered as Markdown, CSV and HTML with
inline SVG charts (no scripts, nothing fetched).

Pure domain: the standard library and the other domain modules only.
"""

from __future__ import annotations

import csv
import html
import io
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.directory import Directory
from bot.disputes import Dispute, Status
from bot.messages import plain
from bot.policy import Policy
from bot.records import CSP, RecordedEvent, md_escape
from bot.workdays import WorkingCalendar, format_day

RESOLVED = "Resolved"
WITHDRAWN = "Withdrawn"
CLOSED = "Closed without agreement"
OUTCOMES = (RESOLVED, WITHDRAWN, CLOSED)


@dataclass(frozen=True)
class Note:
    """A reason for delay or a learning point, as the board sees it."""

    ref: str
    at: datetime
    agency: str
    text: str
    safety_confirmed: bool | None = None


@dataclass(frozen=True)
class ReportCase:
    """One closed dispute, reduced to what the board report counts."""

    ref: str
    category: str
    raising_agency: str
    receiving_agency: str
    opened_at: datetime
    closed_at: datetime
    outcome: str
    resolved_at_stage: int | None
    stages_reached: tuple[int, ...]
    breached_stages: tuple[int, ...]
    working_days: int | None
    overall_target_breached: bool
    delay_reasons: tuple[Note, ...]
    learning: tuple[Note, ...]

    @property
    def agency_pair(self) -> str:
        """'Raising agency → receiving agency'."""
        return f"{self.raising_agency} → {self.receiving_agency}"


def case_from(
    dispute: Dispute,
    events: Iterable[RecordedEvent],
    directory: Directory,
    calendar: WorkingCalendar,
) -> ReportCase:
    """What the board report needs from one closed dispute and its events."""
    events = list(events)
    d = dispute.details
    reached = {1, dispute.stage}
    breached: set[int] = set()
    confirmed_at: int | None = None
    delays: list[Note] = []
    learning: list[Note] = []

    def agency_of(person_id: str | None) -> str:
        person = directory.get(person_id)
        return directory.agency_name(person.agency) if person else "unknown"

    for e in events:
        if e.type == "StageEscalated" and isinstance(e.data.get("to_stage"), int):
            reached.add(e.data["to_stage"])
        elif e.type == "DeadlineBreached" and isinstance(e.data.get("stage"), int):
            breached.add(e.data["stage"])
        elif e.type == "ResolutionConfirmed":
            confirmed_at = int(e.data.get("stage", dispute.stage))
        elif e.type == "DisputeReopened":
            confirmed_at = None
        elif e.type == "DelayReasonRecorded":
            delays.append(
                Note(
                    dispute.ref,
                    e.at,
                    agency_of(e.actor),
                    str(e.data.get("reason", "")),
                    bool(e.data.get("safety_confirmed")),
                )
            )
        elif e.type == "LearningRecorded":
            learning.append(
                Note(dispute.ref, e.at, agency_of(e.actor), str(e.data.get("text", "")))
            )
    resolved = confirmed_at is not None and dispute.status in (Status.RESOLVED, Status.CLOSED)
    if resolved:
        outcome = RESOLVED
    elif dispute.status == Status.WITHDRAWN:
        outcome = WITHDRAWN
    else:
        outcome = CLOSED
    closed_at = dispute.closed_at or dispute.opened_at
    return ReportCase(
        ref=dispute.ref,
        category=dispute.policy.category_label(d.category),
        raising_agency=directory.agency_name(d.raising_agency),
        receiving_agency=directory.agency_name(d.receiving_agency),
        opened_at=dispute.opened_at,
        closed_at=closed_at,
        outcome=outcome,
        resolved_at_stage=confirmed_at if resolved else None,
        stages_reached=tuple(range(1, max(reached) + 1)),
        breached_stages=tuple(sorted(breached)),
        working_days=calendar.working_days_between(d.disagreement_date, closed_at)
        if resolved
        else None,
        overall_target_breached="overall_target_breached" in dispute.flags,
        delay_reasons=tuple(delays),
        learning=tuple(learning),
    )


@dataclass(frozen=True)
class Count:
    """A label and how many disputes it covers."""

    label: str
    count: int


@dataclass(frozen=True)
class StageRate:
    """How many disputes reached a stage, and how many of those missed a deadline in it."""

    stage: int
    name: str
    reached: int
    breached: int

    @property
    def label(self) -> str:
        """'Stage 1: Practitioners'."""
        return f"Stage {self.stage}: {self.name}"

    @property
    def rate(self) -> float | None:
        """The share that missed a deadline, or None if none reached the stage."""
        return self.breached / self.reached if self.reached else None


@dataclass(frozen=True)
class BoardReport:
    """The figures for the board, for one period."""

    partnership: str
    policy: str
    start: date
    end: date
    prepared_at: datetime
    tz: str
    cases: tuple[ReportCase, ...]
    by_category: tuple[Count, ...]
    by_agency_pair: tuple[Count, ...]
    resolved_at_stage: tuple[Count, ...]
    by_outcome: tuple[Count, ...]
    breach_rates: tuple[StageRate, ...]
    median_working_days: float | None
    past_overall_target: int
    delay_reasons: tuple[Note, ...]
    learning: tuple[Note, ...]

    @property
    def total(self) -> int:
        """Disputes closed in the period."""
        return len(self.cases)

    @property
    def resolved(self) -> int:
        """Disputes resolved in the period."""
        return sum(1 for c in self.cases if c.outcome == RESOLVED)

    def case(self, ref: str) -> ReportCase:
        """One of the report's disputes."""
        return next(c for c in self.cases if c.ref == ref)


def _counted(values: Iterable[str]) -> tuple[Count, ...]:
    counts = Counter(values)
    return tuple(Count(k, v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def build_report(
    cases: Sequence[ReportCase],
    policy: Policy,
    *,
    partnership: str,
    start: date,
    end: date,
    now: datetime,
) -> BoardReport:
    """The board's figures from the disputes closed in the period."""
    cases = sorted(cases, key=lambda c: (c.closed_at, c.ref))
    stage_names = {s.number: s.name for s in policy.stages}
    top = max([policy.last_stage, *(max(c.stages_reached) for c in cases)])
    names = {n: stage_names.get(n, f"Stage {n}") for n in range(1, top + 1)}
    resolved_stage = Counter(c.resolved_at_stage for c in cases if c.resolved_at_stage)
    outcome = Counter(c.outcome for c in cases)
    days = [c.working_days for c in cases if c.working_days is not None]
    return BoardReport(
        partnership=partnership,
        policy=f"{policy.name} ({policy.version})",
        start=start,
        end=end,
        prepared_at=now,
        tz=policy.timezone,
        cases=tuple(cases),
        by_category=_counted(c.category for c in cases),
        by_agency_pair=_counted(c.agency_pair for c in cases),
        resolved_at_stage=tuple(
            Count(f"Stage {n}: {name}", resolved_stage.get(n, 0)) for n, name in names.items()
        ),
        by_outcome=tuple(Count(label, outcome.get(label, 0)) for label in OUTCOMES),
        breach_rates=tuple(
            StageRate(
                n,
                name,
                sum(1 for c in cases if n in c.stages_reached),
                sum(1 for c in cases if n in c.breached_stages),
            )
            for n, name in names.items()
        ),
        median_working_days=float(statistics.median(days)) if days else None,
        past_overall_target=sum(1 for c in cases if c.overall_target_breached),
        delay_reasons=tuple(n for c in cases for n in c.delay_reasons),
        learning=tuple(n for c in cases for n in c.learning),
    )


# ---- rendering ---------------------------------------------------------------------------


def number(value: float | None) -> str:
    """3, 2.5, or '-' when there is nothing to show."""
    if value is None:
        return "-"
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def percent(part: int, whole: int) -> str:
    """'33%', or '-' of nothing."""
    return f"{round(100 * part / whole)}%" if whole else "-"


def _rate_text(rate: StageRate) -> str:
    if not rate.reached:
        return "none reached this stage"
    return f"{rate.breached} of {rate.reached} ({percent(rate.breached, rate.reached)})"


def _agencies_of(report: BoardReport, ref: str) -> str:
    return report.case(ref).agency_pair


def _summary(report: BoardReport) -> list[tuple[str, str]]:
    return [
        ("Disputes closed", str(report.total)),
        ("Resolved", str(report.resolved)),
        (
            "Median working days from the disagreement to resolution",
            number(report.median_working_days),
        ),
        ("Past the policy's overall target", str(report.past_overall_target)),
        ("Reasons for delay recorded", str(len(report.delay_reasons))),
        ("Learning points", str(len(report.learning))),
    ]


def _local(report: BoardReport, at: datetime) -> date:
    return at.astimezone(ZoneInfo(report.tz)).date()


def _day(report: BoardReport, at: datetime) -> str:
    return format_day(_local(report, at))


def _period(report: BoardReport) -> str:
    return f"{format_day(report.start)} to {format_day(report.end)}"


def _md(text: str) -> str:
    # Table cells: one line, pipes and markup shown literally.
    return md_escape(text).replace("\n", " ")


def report_markdown(report: BoardReport) -> str:
    """The report as Markdown."""
    out = [
        "# Board report: professional disagreements",
        "",
        f"{_md(report.partnership)}. Disputes closed from {_period(report)} (inclusive), under "
        f"{_md(report.policy)}. Prepared {_day(report, report.prepared_at)}.",
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in _summary(report)),
    ]

    def table(title: str, head: str, rows: Sequence[Count], whole: int) -> None:
        out.extend(["", f"## {title}", "", f"| {head} | Disputes | Share |", "|---|---|---|"])
        out.extend(f"| {_md(r.label)} | {r.count} | {percent(r.count, whole)} |" for r in rows)
        if not rows:
            out.append("| none | 0 | - |")

    table("By category", "Category", report.by_category, report.total)
    table(
        "By agency pair", "Raising agency → receiving agency", report.by_agency_pair, report.total
    )
    table("Resolved at stage", "Stage", report.resolved_at_stage, report.resolved)
    table("Outcome", "Outcome", report.by_outcome, report.total)
    out += [
        "",
        "## Deadlines missed, by stage",
        "",
        "| Stage | Reached | Missed a deadline | Rate |",
        "|---|---|---|---|",
        *(
            f"| {_md(r.label)} | {r.reached} | {r.breached} | {percent(r.breached, r.reached)} |"
            for r in report.breach_rates
        ),
        "",
        "## Reasons for delay",
        "",
    ]
    if report.delay_reasons:
        out += [
            "| Dispute | Agencies | Recorded | Reason | Safety confirmed |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {n.ref} | {_md(_agencies_of(report, n.ref))} | {_day(report, n.at)} | "
            f"{_md(n.text)} | {'yes' if n.safety_confirmed else 'no'} |"
            for n in report.delay_reasons
        ]
    else:
        out.append("None recorded.")
    out += ["", "## Learning points (action log)", ""]
    if report.learning:
        out += [
            "| Dispute | Category | Agencies | Outcome | Recorded | Learning point |",
            "|---|---|---|---|---|---|",
        ]
        for n in report.learning:
            c = report.case(n.ref)
            out.append(
                f"| {n.ref} | {_md(c.category)} | {_md(c.agency_pair)} | {_outcome_text(c)} | "
                f"{_day(report, n.at)} | {_md(n.text)} |"
            )
    else:
        out.append("None recorded.")
    return "\n".join(out) + "\n"


def _outcome_text(case: ReportCase) -> str:
    if case.resolved_at_stage:
        return f"{case.outcome} at stage {case.resolved_at_stage}"
    return case.outcome


CSV_COLUMNS = ("section", "item", "count", "out_of", "percent", "text", "detail")


def _cell(value: str) -> str:
    # A cell starting like a formula would run as one in a spreadsheet: show it as text.
    value = plain(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def report_csv(report: BoardReport) -> str:
    """The report's figures as CSV rows: section, item, count, out of, percent, text, detail."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)

    def row(
        section: str, item: str, count: Any = "", whole: Any = "", text: str = "", detail: str = ""
    ) -> None:
        share = percent(count, whole) if isinstance(count, int) and isinstance(whole, int) else ""
        writer.writerow([section, _cell(item), count, whole, share, _cell(text), _cell(detail)])

    writer.writerow(["period", "from", "", "", "", report.start.isoformat(), ""])
    writer.writerow(["period", "to", "", "", "", report.end.isoformat(), ""])
    row("summary", "Disputes closed", report.total)
    row("summary", "Resolved", report.resolved, report.total)
    row("summary", "Median working days to resolution", text=number(report.median_working_days))
    row("summary", "Past the overall target", report.past_overall_target, report.total)
    for c in report.by_category:
        row("by category", c.label, c.count, report.total)
    for c in report.by_agency_pair:
        row("by agency pair", c.label, c.count, report.total)
    for c in report.resolved_at_stage:
        row("resolved at stage", c.label, c.count, report.resolved)
    for c in report.by_outcome:
        row("outcome", c.label, c.count, report.total)
    for r in report.breach_rates:
        row("breach rate", r.label, r.breached, r.reached)
    for n in report.delay_reasons:
        row(
            "delay reason",
            n.ref,
            text=n.text,
            detail=f"{_agencies_of(report, n.ref)}; recorded {_local(report, n.at).isoformat()}; "
            f"safety confirmed: {'yes' if n.safety_confirmed else 'no'}",
        )
    for n in report.learning:
        case = report.case(n.ref)
        row(
            "learning point",
            n.ref,
            text=n.text,
            detail=f"{case.category}; {case.agency_pair}; {_outcome_text(case)}; recorded {_local(report, n.at).isoformat()}",
        )
    return buffer.getvalue()


# ---- HTML with charts --------------------------------------------------------------------------

BAR = "#1d70b8"
BREACH = "#d4351c"

_REPORT_CSS = """
body { font-family: Arial, Helvetica, sans-serif; color: #0b0c0c; margin: 2rem; max-width: 64rem; }
h1 { font-size: 1.8rem; margin-bottom: .3rem; } h2 { font-size: 1.3rem; margin-top: 2rem;
  border-bottom: 2px solid #1d70b8; padding-bottom: .2rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; padding: 0; list-style: none; }
.figures li { border-left: 6px solid #1d70b8; background: #f3f2f1; padding: .6rem 1rem; min-width: 12rem; }
.figures .figure { display: block; font-size: 2rem; font-weight: bold; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem 2rem; }
figure { margin: 0; } figcaption { font-weight: bold; margin-bottom: .3rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #b1b4b6; }
td.n { text-align: right; } .text { white-space: pre-wrap; }
@media print { body { margin: 0; } .charts { display: block; } figure { break-inside: avoid; } }
"""


def _h(text: Any) -> str:
    return html.escape(plain(str(text)), quote=True)


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, float, str]],
    *,
    scale: float | None = None,
    colour: str = BAR,
) -> str:
    """A horizontal bar chart as inline SVG: (label, value, shown text) per bar."""
    width, label_w, row_h, pad = 480, 200, 26, 6
    bar_w = width - label_w - 110
    top = max([scale or 0.0, *(v for _, v, _ in rows)]) or 1.0
    height = max(1, len(rows)) * row_h + pad * 2
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Arial, Helvetica, sans-serif" font-size="12">',
        f"<title>{_h(title)}</title>",
    ]
    if not rows:
        parts.append(f'<text x="0" y="{pad + 16}" fill="#505a5f">None in this period</text>')
    for i, (label, value, shown) in enumerate(rows):
        y = pad + i * row_h
        short = label if len(label) <= 32 else label[:31] + "…"
        length = round(bar_w * value / top) if value else 0
        parts += [
            f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end" fill="#0b0c0c"><title>{_h(label)}</title>{_h(short)}</text>',
            f'<rect x="{label_w}" y="{y + 3}" width="{max(length, 1)}" height="{row_h - 8}" fill="{colour}"/>',
            f'<text x="{label_w + max(length, 1) + 6}" y="{y + 16}" fill="#0b0c0c">{_h(shown)}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def _count_rows(counts: Sequence[Count], whole: int) -> list[tuple[str, float, str]]:
    return [(c.label, float(c.count), f"{c.count} ({percent(c.count, whole)})") for c in counts]


def _html_table(
    head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_h(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = "".join(
            f'<td class="{"n" if i in numeric else "text"}">{_h(v)}</td>' for i, v in enumerate(r)
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "".join(out)


def report_html(report: BoardReport) -> str:
    """The report as a self-contained HTML page with SVG charts (no scripts)."""
    figures = "".join(
        f'<li><span class="figure">{_h(value)}</span>{_h(label)}</li>'
        for label, value in _summary(report)
    )
    charts = [
        (
            "By category",
            bar_chart("Disputes by category", _count_rows(report.by_category, report.total)),
        ),
        (
            "By agency pair",
            bar_chart("Disputes by agency pair", _count_rows(report.by_agency_pair, report.total)),
        ),
        (
            "Resolved at stage",
            bar_chart(
                "Disputes resolved at each stage",
                _count_rows(report.resolved_at_stage, report.resolved),
            ),
        ),
        ("Outcome", bar_chart("Disputes by outcome", _count_rows(report.by_outcome, report.total))),
        (
            "Deadlines missed, by stage",
            bar_chart(
                "Share of disputes reaching each stage that missed a deadline there",
                [(r.label, 100 * (r.rate or 0.0), _rate_text(r)) for r in report.breach_rates],
                scale=100.0,
                colour=BREACH,
            ),
        ),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>Board report {report.start.isoformat()} to {report.end.isoformat()}</title>",
        f"<style>{_REPORT_CSS}</style></head><body>",
        "<h1>Board report: professional disagreements</h1>",
        f"<p>{_h(report.partnership)}. Disputes closed from {_h(_period(report))} (inclusive), "
        f"under {_h(report.policy)}. Prepared {_h(_day(report, report.prepared_at))}.</p>",
        f'<h2>Summary</h2><ul class="figures">{figures}</ul>',
        '<div class="charts">',
        *(f"<figure><figcaption>{_h(t)}</figcaption>{svg}</figure>" for t, svg in charts),
        "</div>",
        "<h2>By category</h2>",
        _html_table(
            ("Category", "Disputes", "Share"),
            ((c.label, c.count, percent(c.count, report.total)) for c in report.by_category),
            (1, 2),
        ),
        "<h2>By agency pair</h2>",
        _html_table(
            ("Raising agency → receiving agency", "Disputes", "Share"),
            ((c.label, c.count, percent(c.count, report.total)) for c in report.by_agency_pair),
            (1, 2),
        ),
        "<h2>Resolved at stage</h2>",
        _html_table(
            ("Stage", "Disputes", "Share"),
            (
                (c.label, c.count, percent(c.count, report.resolved))
                for c in report.resolved_at_stage
            ),
            (1, 2),
        ),
        "<h2>Outcome</h2>",
        _html_table(
            ("Outcome", "Disputes", "Share"),
            ((c.label, c.count, percent(c.count, report.total)) for c in report.by_outcome),
            (1, 2),
        ),
        "<h2>Deadlines missed, by stage</h2>",
        _html_table(
            ("Stage", "Reached", "Missed a deadline", "Rate"),
            (
                (r.label, r.reached, r.breached, percent(r.breached, r.reached))
                for r in report.breach_rates
            ),
            (1, 2, 3),
        ),
        "<h2>Reasons for delay</h2>",
        _html_table(
            ("Dispute", "Agencies", "Recorded", "Reason", "Safety confirmed"),
            (
                (
                    n.ref,
                    _agencies_of(report, n.ref),
                    _day(report, n.at),
                    n.text,
                    "yes" if n.safety_confirmed else "no",
                )
                for n in report.delay_reasons
            ),
        )
        if report.delay_reasons
        else "<p>None recorded.</p>",
        "<h2>Learning points (action log)</h2>",
        _html_table(
            ("Dispute", "Category", "Agencies", "Outcome", "Recorded", "Learning point"),
            (
                (
                    n.ref,
                    report.case(n.ref).category,
                    report.case(n.ref).agency_pair,
                    _outcome_text(report.case(n.ref)),
                    _day(report, n.at),
                    n.text,
                )
                for n in report.learning
            ),
        )
        if report.learning
        else "<p>None recorded.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
