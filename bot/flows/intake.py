"""The /escalate flow: log a professional disagreement in a few questions.

Order from the brief: immediate risk first, then scope, the other agency and practitioner, the
category, the case, the decision, reasons, outcome sought, date, the person's own details when
the directory does not know them, and a summary to confirm. Imports only the domain.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.directory import role_label
from bot.disputes import CASE_REF_LIMIT, SUMMARY_LIMIT, DisputeDetails
from bot.flows.engine import Answers, Choice, Flow, FlowContext, Notice, Question, describe

IN_SCOPE = "disagreement"
MAX_DAYS_BACK = 366


def _unknown(answers: Answers, ctx: FlowContext) -> bool:
    return ctx.person is None


def _agencies(answers: Answers, ctx: FlowContext) -> list[Choice]:
    own = ctx.person.agency if ctx.person else answers.get("own_agency")
    return [Choice(a.id, a.name) for a in ctx.directory.agencies.values() if a.id != own]


def _all_agencies(answers: Answers, ctx: FlowContext) -> list[Choice]:
    return [Choice(a.id, a.name) for a in ctx.directory.agencies.values()]


def _scope(answers: Answers, ctx: FlowContext) -> list[Choice]:
    return [Choice(IN_SCOPE, "A professional disagreement with another agency's decision")] + [
        Choice(o.id, o.label) for o in ctx.policy.out_of_scope
    ]


def _categories(answers: Answers, ctx: FlowContext) -> list[Choice]:
    return [Choice(c.id, c.label) for c in ctx.policy.categories]


def _not_future(value: Any, answers: Answers, ctx: FlowContext) -> str | None:
    if value > ctx.today:
        return "The date of the disagreement cannot be in the future."
    if value < ctx.today - timedelta(days=MAX_DAYS_BACK):
        # A slip of the year (01/12/0026): its deadlines would be centuries overdue, and
        # counting them would load the bank holidays of every year in between.
        return "That is more than a year ago: please check the year, or give the date the decision reached you."
    return None


def _case_ref(value: Any, answers: Answers, ctx: FlowContext) -> str | None:
    if any(ch.isspace() for ch in value.strip()) and len(value.split()) > 3:
        return "Give your agency's case reference only (for example CS-204611), never the child's or adult's name."
    return None


def _other_agency_differs(value: Any, answers: Answers, ctx: FlowContext) -> str | None:
    if answers.get("other_agency") == value:
        return "Your agency must differ from the other agency: disagreements inside one agency go through its own processes."
    return None


QUESTIONS = [
    Question(
        "immediate_risk",
        "Is a child or adult at immediate risk of significant harm?",
        "yes_no",
        hint="If yes, you'll be told what to do now; the disagreement can still be logged.",
    ),
    Question(
        "scope",
        "What is this about?",
        "choice",
        hint="Complaints, allegations against staff and whistleblowing have their own procedures.",
        choices=_scope,
    ),
    Question("other_agency", "Which agency do you disagree with?", "choice", choices=_agencies),
    Question(
        "other_person",
        "Who is the practitioner there, if you know?",
        "person",
        required=False,
        agency_from="other_agency",
        hint="Reply 'skip' if you don't know: their safeguarding lead will be asked instead.",
    ),
    Question("category", "What is the disagreement about?", "choice", choices=_categories),
    Question(
        "case_ref",
        "What is the case reference in your agency's system?",
        "short_text",
        max_length=CASE_REF_LIMIT,
        hint="The reference only, never the child's or adult's name.",
        check=_case_ref,
    ),
    Question(
        "decision",
        "What was decided (or not done) that you disagree with?",
        "long_text",
        max_length=SUMMARY_LIMIT,
    ),
    Question(
        "reasons",
        "What are your evidence-based reasons for disagreeing?",
        "long_text",
        max_length=SUMMARY_LIMIT,
    ),
    Question(
        "outcome_sought", "What outcome are you seeking?", "long_text", max_length=SUMMARY_LIMIT
    ),
    Question(
        "disagreement_date",
        "When did the disagreement arise (or the decision reach you)?",
        "date",
        hint="Today if you leave it blank.",
        check=_not_future,
        default=lambda answers, ctx: ctx.today,
    ),
    Question(
        "own_name",
        "What is your name?",
        "short_text",
        max_length=120,
        when=_unknown,
        default=lambda answers, ctx: ctx.display_name,
    ),
    Question(
        "own_agency",
        "Which agency do you work for?",
        "choice",
        choices=_all_agencies,
        when=_unknown,
        check=_other_agency_differs,
    ),
    Question(
        "own_manager",
        "Who is your line manager?",
        "person",
        agency_from="own_agency",
        required=False,
        when=_unknown,
    ),
    Question("confirm", "Log this disagreement now?", "confirm"),
]


def immediate_risk_guidance(ctx: FlowContext, agency_id: str | None) -> str:
    """What to do now, naming the person's designated safeguarding lead and the on-call route."""
    policy = ctx.policy
    lines = [policy.immediate_risk.guidance.strip()]
    if agency_id:
        leads = ctx.directory.role_holders(
            agency_id, policy.immediate_risk.route, for_person=ctx.person.id if ctx.person else None
        )
        if leads:
            names = " or ".join(f"{p.name}{' (' + p.title + ')' if p.title else ''}" for p in leads)
            lines.append(
                f"Your {role_label(policy.immediate_risk.route)}: {names}. They have been told now."
            )
        else:
            lines.append(
                f"Your agency has no {role_label(policy.immediate_risk.route)} in the directory: contact your manager now."
            )
    if not ctx.calendar.in_working_hours(ctx.now):
        lines.append(policy.out_of_hours.guidance.strip())
        if agency_id:
            on_call = ctx.directory.agency(agency_id).on_call
            if on_call:
                lines.append(f"Out of hours, your agency's route is {on_call}.")
    return "\n".join(lines)


def _after(question_id: str, value: Any, answers: Answers, ctx: FlowContext) -> Notice | None:
    if question_id == "immediate_risk" and value:
        agency = ctx.person.agency if ctx.person else None
        return Notice(immediate_risk_guidance(ctx, agency), urgent=True)
    if question_id == "own_agency" and ctx.person is None and answers.get("immediate_risk"):
        # Someone the directory did not know reported immediate risk before we knew their
        # agency: now that we do, name its safeguarding lead (Conversations tells them at once).
        return Notice(immediate_risk_guidance(ctx, value), urgent=True)
    if question_id == "scope" and value != IN_SCOPE:
        match = next((o for o in ctx.policy.out_of_scope if o.id == value), None)
        if match is not None:
            return Notice(
                f"{match.label}: this escalation protocol does not apply. {match.redirect.strip()}",
                stop=True,
            )
    if question_id == "confirm" and not value:
        return Notice("Nothing has been logged. Type escalate to start again.", stop=True)
    return None


def _summary(answers: Answers, ctx: FlowContext) -> list[tuple[str, str]]:
    flow = intake_flow()
    out = []
    for q in flow.questions:
        if q.id in ("confirm", "scope") or q.id not in answers:
            continue
        out.append((q.prompt, describe(answers[q.id], q, answers, ctx)))
    return out


def intake_flow() -> Flow:
    """The /escalate flow."""
    return Flow(
        "intake", "Log a professional disagreement", QUESTIONS, after=_after, summary=_summary
    )


def details_from(answers: Answers, ctx: FlowContext, person_id: str) -> DisputeDetails:
    """The dispute details a completed intake gives."""
    agency = ctx.person.agency if ctx.person else answers["own_agency"]
    return DisputeDetails(
        raised_by=person_id,
        raising_agency=agency,
        receiving_agency=answers["other_agency"],
        receiving_person=answers.get("other_person"),
        category=answers["category"],
        case_ref=answers["case_ref"],
        decision=answers["decision"],
        reasons=answers["reasons"],
        outcome_sought=answers["outcome_sought"],
        disagreement_date=answers["disagreement_date"],
        immediate_risk=bool(answers.get("immediate_risk")),
    )
