"""Neutral messages and flows rendered as Adaptive Cards 1.5 for Microsoft Teams.

Cards are plain JSON (dicts), built only here. TextBlock and FactSet text is Markdown in Teams,
so everything a user typed goes through `escape` first: link syntax, bare web addresses,
`<at>` mentions and `{{DATE()}}` functions are broken with an invisible word joiner, so they
show as typed and can neither link nor ping. Buttons and forms use `Action.Submit` (it arrives
as a message activity with `value`); `Action.Execute` is avoided (DESIGN.md: CloudAdapter
answers its invoke with HTTP 500). Teams' own extensions (`msteams`: full width and mention
entities) sit at the top level of the card, where a validator can set them aside. Imports
only the domain and the flows: no Bot Framework types.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.flows.engine import FlowRunner, Notice, Question
from bot.messages import Button, Message, clip, plain

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
# Teams refuses messages over about 28 KB; these keep a card well under it.
TEXT_LIMIT = 4000
FACT_TITLE_LIMIT = 200
FACT_VALUE_LIMIT = 3000
MAX_FACTS = 40
MAX_ACTIONS = 6  # what Teams shows in a row before an overflow menu
MAX_CHOICES = 200
# Keys of Action.Submit data the bot sets itself; a flow question may not use them as its id.
RESERVED = frozenset({"action", "ref", "form", "origin", "shown", "risk_alerted"})

_JOINER = "\u2060"  # word joiner: invisible, and it breaks the syntax it is put into
_SCHEME = re.compile(r"(?i)\b(https?|ftp|mailto|file|tel|sms|callto|teams|msteams)(\s*):")
_WWW = re.compile(r"(?i)\bwww\.")


def escape(text: str) -> str:
    """User text made literal for Teams Markdown: no links, no mentions, no card functions."""
    text = plain(text)
    text = text.replace("<", "<" + _JOINER)  # <at>mention</at>, <https://autolink>
    text = text.replace("](", "]" + _JOINER + "(")  # [text](url)
    text = text.replace("][", "]" + _JOINER + "[")  # [text][ref]
    text = text.replace("]:", "]" + _JOINER + ":")  # [ref]: url
    text = text.replace("{{", "{" + _JOINER + "{")  # {{DATE(...)}} and {{TIME(...)}}
    text = _SCHEME.sub(lambda m: m.group(1) + _JOINER + m.group(2) + ":", text)
    return _WWW.sub("www" + _JOINER + ".", text)


@dataclass(frozen=True)
class Mention:
    """A person to @mention in a card: their Entra (AAD) object id and display name."""

    id: str
    name: str

    @property
    def text(self) -> str:
        """The `<at>` text that must appear in the card exactly as in the entity."""
        return f"<at>{escape(self.name)}</at>"

    def entity(self) -> dict[str, Any]:
        """The Teams mention entity."""
        return {
            "type": "mention",
            "text": self.text,
            "mentioned": {"id": self.id, "name": self.name},
        }


def _card(
    body: list[dict[str, Any]],
    actions: list[dict[str, Any]] | None = None,
    *,
    fallback: str,
    mentions: list[Mention] | None = None,
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": VERSION,
        "fallbackText": clip(escape(fallback), 300),
        "body": body,
    }
    if actions:
        card["actions"] = actions
    msteams: dict[str, Any] = {"width": "Full"}
    if mentions:
        msteams["entities"] = [m.entity() for m in mentions]
    card["msteams"] = msteams
    return card


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": clip(text, TEXT_LIMIT), "wrap": True, **style}


def _facts(facts: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "FactSet",
        "facts": [
            {
                "title": clip(escape(title), FACT_TITLE_LIMIT),
                "value": clip(escape(value), FACT_VALUE_LIMIT),
            }
            for title, value in facts[:MAX_FACTS]
        ],
    }


def submit(title: str, data: dict[str, Any], style: str | None = None) -> dict[str, Any]:
    """An Action.Submit carrying `data` back to the bot."""
    action: dict[str, Any] = {"type": "Action.Submit", "title": clip(title, 60), "data": data}
    if style:
        action["style"] = style
    return action


def button_action(button: Button) -> dict[str, Any]:
    """A dispute button: Action.Submit with {action, ref}."""
    style = {"primary": "positive", "danger": "destructive"}.get(button.style or "")
    return submit(button.label, {"action": button.action.value, "ref": button.ref}, style)


def message_card(
    message: Message,
    *,
    mentions: list[Mention] | None = None,
    extra_facts: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A message: its text, its facts as a FactSet, its buttons as Action.Submit.

    `extra_facts` are the bot's own (already safe) facts, which may carry `<at>` mentions.
    """
    bold = message.kind == "thread_root"
    body = [_text(escape(message.text), **({"weight": "Bolder"} if bold else {}))]
    if message.facts:
        body.append(_facts(message.facts))
    if extra_facts:
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": clip(t, FACT_TITLE_LIMIT), "value": clip(v, FACT_VALUE_LIMIT)}
                    for t, v in extra_facts
                ],
            }
        )
    actions = [button_action(b) for b in message.buttons[:MAX_ACTIONS]]
    return _card(body, actions, fallback=plain(message.text), mentions=mentions)


def notice_card(text: str, *, title: str | None = None, attention: bool = False) -> dict[str, Any]:
    """A short reply: an explanation, a refusal, a confirmation."""
    body = []
    if title:
        body.append(_text(escape(title), weight="Bolder"))
    body.append(_text(escape(text), **({"color": "attention"} if attention else {})))
    return _card(body, fallback=plain(text))


def acted_card(
    note: str,
    text: str,
    facts: list[tuple[str, str]],
    buttons: list[Button],
) -> dict[str, Any]:
    """A card after someone acted on it: who did what and when, then where things stand now."""
    body = [_text(escape(note), weight="Bolder", color="good"), _text(escape(text))]
    if facts:
        body.append(_facts(facts))
    actions = [button_action(b) for b in buttons[:MAX_ACTIONS]]
    return _card(body, actions, fallback=plain(note))


# ---- flows as forms -------------------------------------------------------------------------


def _choices(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"title": _choice_title(label), "value": value} for value, label in pairs]


@functools.lru_cache(maxsize=4096)
def _choice_title(label: str) -> str:
    # Choice labels come from the partnership's configuration and directory, the same few
    # dozen on every form: escaped once each, not on every card (half of a form's CPU).
    return clip(escape(label), 150)


def _person_choices(
    q: Question, runner: FlowRunner, answers: dict[str, Any]
) -> list[dict[str, str]]:
    """The people offered; everyone, with their agency, while the agency is not chosen yet."""
    ctx = runner.ctx
    if q.agency_from and answers.get(q.agency_from):
        return _choices([(c.value, c.label) for c in q.options(answers, ctx)])
    d = ctx.directory
    people = sorted(d, key=lambda p: (d.agency_name(p.agency), p.name))
    return _choices([(p.id, f"{p.name} ({d.agency_name(p.agency)})") for p in people])


def _shown_value(
    q: Question, runner: FlowRunner, answers: dict[str, Any], raw: dict[str, Any]
) -> Any:
    """What the input shows: the accepted answer, else what was typed, else the default."""
    if q.id in answers:
        return answers[q.id]
    typed = raw.get(q.id)
    if typed not in (None, ""):
        return typed
    return q.default_value(answers, runner.ctx)


def _input(
    q: Question, runner: FlowRunner, answers: dict[str, Any], raw: dict[str, Any]
) -> dict[str, Any]:
    """The Input element for a question, prefilled."""
    current = _shown_value(q, runner, answers, raw)
    optional = not q.required or q.default is not None
    element: dict[str, Any] = {
        "id": q.id,
        "label": clip(q.prompt + (" (optional)" if optional else ""), 300),
    }
    if not optional:
        element["isRequired"] = True
        element["errorMessage"] = clip(f"Please answer: {q.prompt}", 300)
    if q.kind in ("yes_no", "confirm"):
        element.update(
            type="Input.ChoiceSet",
            style="expanded",
            choices=[{"title": "Yes", "value": "yes"}, {"title": "No", "value": "no"}],
        )
        if isinstance(current, bool):
            element["value"] = "yes" if current else "no"
        elif isinstance(current, str) and current.lower() in ("yes", "no"):
            element["value"] = current.lower()
        return element
    if q.kind == "date":
        element["type"] = "Input.Date"
        if isinstance(current, date):
            element["value"] = current.isoformat()
        elif isinstance(current, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", current):
            element["value"] = current
        return element
    if q.kind in ("choice", "person"):
        if q.kind == "person":
            choices = _person_choices(q, runner, answers)
        else:
            choices = _choices([(c.value, c.label) for c in q.options(answers, runner.ctx)])
        element.update(
            type="Input.ChoiceSet",
            style="compact",
            placeholder="Choose",
            choices=choices[:MAX_CHOICES],
        )
        values = {c["value"] for c in element["choices"]}
        if isinstance(current, str) and current in values:
            element["value"] = current
        return element
    element.update(
        type="Input.Text",
        maxLength=q.limit,
        isMultiline=q.kind == "long_text",
    )
    if current not in (None, ""):
        element["value"] = str(current)[: q.limit]  # maxLength: the rest is cut, never changed
    if q.hint:
        element["placeholder"] = clip(q.hint, 200)
    return element


def flow_card(
    runner: FlowRunner,
    *,
    title: str,
    submit_title: str,
    data: dict[str, Any],
    answers: dict[str, Any] | None = None,
    raw: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    notices: list[Notice] | None = None,
    intro: str | None = None,
) -> dict[str, Any]:
    """A whole flow as one form: each applicable question, its hint, and its error under it.

    The submit data carries `shown` (the questions on this card), so the bot can tell when
    an answer brings up questions the person has not seen yet.
    """
    answers = runner.state.answers if answers is None else answers
    raw = raw or {}
    errors = errors or {}
    body: list[dict[str, Any]] = [_text(escape(title), weight="Bolder", size="Medium")]
    if intro:
        body.append(_text(escape(intro)))
    for notice in notices or []:
        prefix = "**Act now.** " if notice.urgent else ""
        body.append(
            _text(prefix + escape(notice.text), **({"color": "attention"} if notice.urgent else {}))
        )
    if errors:
        body.append(
            _text(
                f"Please check {len(errors)} answer{'s' if len(errors) != 1 else ''} marked below.",
                color="attention",
                weight="Bolder",
            )
        )
    shown: list[str] = []
    for q in runner.applicable(answers):
        if q.kind == "confirm":
            continue  # the submit button is the confirmation
        shown.append(q.id)
        body.append(_input(q, runner, answers, raw))
        if q.id in errors:
            body.append(
                _text(
                    f"⚠ {escape(q.prompt)} {escape(errors[q.id])}",
                    color="attention",
                    spacing="None",
                    id=f"error-{q.id}",
                )
            )
        if q.hint and q.kind not in ("short_text", "long_text"):
            body.append(_text(escape(q.hint), isSubtle=True, size="Small", spacing="None"))
    for question_id, error in errors.items():
        if question_id not in shown:
            body.append(_text(escape(error), color="attention"))
    payload = {**data, "shown": shown}
    return _card(body, [submit(submit_title, payload, "positive")], fallback=title)


def done_card(title: str, text: str, note: str) -> dict[str, Any]:
    """A form once it is done: what happened, who did it and when; no inputs left."""
    return _card(
        [
            _text(escape(title), weight="Bolder"),
            _text(escape(text)),
            _text(escape(note), isSubtle=True, size="Small"),
        ],
        fallback=text,
    )


def form_values(value: dict[str, Any]) -> dict[str, Any]:
    """The answers in an Action.Submit value, without the bot's own keys."""
    return {k: v for k, v in value.items() if k not in RESERVED and k != "msteams"}
