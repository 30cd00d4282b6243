"""Neutral messages and flows rendered as Slack Block Kit, with slack_sdk's models.

Everything a user typed is escaped before it is echoed (`escape`), so `<!channel>`,
`<@U123>` and `<https://x|y>` show as text instead of pinging or linking. Lengths are clipped
to Slack's documented limits, so a long answer never makes a post fail.
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DatePickerElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    OptionGroup,
    PlainTextInputElement,
    PlainTextObject,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.flows.engine import FlowRunner, Notice, Question
from bot.messages import Button, Message

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
SECTION_TEXT = 3000
OPTION_TEXT = 75
OPTIONS = 100
TITLE = 24
INPUT_LIMIT = 3000
VALUE_ACTION = "value"


def escape(text: str) -> str:
    """Slack's three control characters, escaped: user text can never ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(text, SECTION_TEXT))


def _plain(text: str, limit: int = OPTION_TEXT) -> PlainTextObject:
    return PlainTextObject(text=clip(text, limit), emoji=False)


def button_element(button: Button) -> ButtonElement:
    """A button carrying its dispute reference."""
    return ButtonElement(
        text=_plain(button.label),
        action_id=button.action.value,
        value=button.ref,
        style=button.style,
    )


def message_blocks(message: Message) -> list[Block]:
    """A message: its text, its facts (one section each, so long ones fit), its buttons."""
    blocks: list[Block] = [SectionBlock(text=_mrkdwn(escape(message.text)))]
    for label, value in message.facts:
        blocks.append(SectionBlock(text=_mrkdwn(f"*{escape(label)}*\n{escape(value)}")))
    blocks = blocks[: MAX_MESSAGE_BLOCKS - 1]
    if message.buttons:
        blocks.append(ActionsBlock(elements=[button_element(b) for b in message.buttons[:25]]))
    return blocks


def fallback_text(message: Message) -> str:
    """The plain text shown in notifications (and to clients without Block Kit)."""
    return clip(escape(message.text), 3000)


def acted_blocks(original: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """The original message with its buttons replaced by who acted and when."""
    kept = [b for b in original if b.get("type") != "actions"]
    context = ContextBlock(elements=[_mrkdwn(escape(note))]).to_dict()
    return [*kept, context][:MAX_MESSAGE_BLOCKS]


# ---- flows as modals ------------------------------------------------------------------------


class _Once:
    """Serialises itself once, for the option lists every modal offers again.

    slack_sdk's `to_dict` validates every element each time a view is serialised: for the
    intake modal, with the directory's people and agencies as options, 3-4 ms of CPU per
    modal, most of it these same options. Built (and validated) once, each is then a lookup.
    The dict given out is shared: it is serialised to JSON, never changed.
    """

    def to_dict(self, option_type: str = "block") -> dict[str, Any]:
        done: dict[str, dict[str, Any]] = self.__dict__.setdefault("_serialised", {})
        if option_type not in done:
            done[option_type] = super().to_dict(option_type)  # type: ignore[misc]
        return done[option_type]


class _SerialisedOnce(_Once, Option):
    """An option serialised once (see `_Once`)."""


class _GroupSerialisedOnce(_Once, OptionGroup):
    """An option group serialised once (see `_Once`)."""


Choices = tuple[tuple[str, str], ...]


@lru_cache(maxsize=512)
def _shared_options(choices: Choices) -> tuple[Option, ...]:
    # By content: the same choices (a directory's agencies, an agency's people) are the same
    # options, however often and for whomever a modal offers them.
    return tuple(
        _SerialisedOnce(value=value[:150], text=_plain(label)) for value, label in choices[:OPTIONS]
    )


@lru_cache(maxsize=64)
def _shared_groups(groups: tuple[tuple[str, Choices], ...]) -> tuple[OptionGroup, ...]:
    return tuple(
        _GroupSerialisedOnce(label=_plain(label), options=list(_shared_options(choices)))
        for label, choices in groups[:OPTIONS]
    )


def _options(choices: list[tuple[str, str]]) -> list[Option]:
    return list(_shared_options(tuple(choices)))


def _element(q: Question, runner: FlowRunner, answers: dict[str, Any]) -> Any:
    """The input element for a question, prefilled from answers so far."""
    ctx = runner.ctx
    current = answers.get(q.id)
    if q.kind in ("yes_no", "confirm"):
        options = _options([("yes", "Yes"), ("no", "No")])
        initial = None
        if current is not None:
            initial = options[0] if current else options[1]
        return RadioButtonsElement(action_id=VALUE_ACTION, options=options, initial_option=initial)
    if q.kind == "date":
        value = current if isinstance(current, date) else q.default_value(answers, ctx)
        return DatePickerElement(
            action_id=VALUE_ACTION,
            initial_date=value.isoformat() if isinstance(value, date) else None,
        )
    if q.kind == "person" and not q.agency_from:
        # Everyone in the directory is too many for one select: group by agency.
        groups = []
        for agency in ctx.directory.agencies.values():
            people = tuple((p.id, p.name) for p in ctx.directory.in_agency(agency.id))
            if people:
                groups.append((agency.name, people))
        return StaticSelectElement(
            action_id=VALUE_ACTION,
            option_groups=list(_shared_groups(tuple(groups))),
            placeholder=_plain("Choose"),
        )
    if q.kind in ("choice", "person"):
        choices = [(c.value, c.label) for c in q.options(answers, ctx)]
        options = _options(choices) or _options([("none", "(nothing to choose yet)")])
        initial = next((o for o in options if o.value == current), None)
        return StaticSelectElement(
            action_id=VALUE_ACTION,
            options=options,
            initial_option=initial,
            placeholder=_plain("Choose"),
        )
    return PlainTextInputElement(
        action_id=VALUE_ACTION,
        multiline=q.kind == "long_text",
        max_length=min(q.limit, INPUT_LIMIT),
        initial_value=str(current) if current else None,
    )


# Answers that change which questions apply, or what they offer: re-render on change.
DISPATCHING_KINDS = ("yes_no", "choice")


def flow_view(
    runner: FlowRunner,
    *,
    callback_id: str,
    title: str,
    submit: str,
    answers: dict[str, Any],
    notices: list[Notice],
    metadata: dict[str, Any],
    intro: str | None = None,
) -> View:
    """A whole flow as one modal: its applicable questions, with notices shown at the top."""
    blocks: list[Block] = []
    if intro:
        blocks.append(SectionBlock(text=_mrkdwn(escape(intro))))
    for notice in notices:
        prefix = ":rotating_light: *Act now.* " if notice.urgent else ""
        blocks.append(SectionBlock(text=_mrkdwn(prefix + escape(notice.text))))
    for q in runner.applicable(answers):
        if q.kind == "confirm":
            continue  # the modal's submit button is the confirmation
        blocks.append(
            InputBlock(
                block_id=q.id,
                label=_plain(q.prompt, 2000),
                hint=_plain(q.hint, 2000) if q.hint else None,
                element=_element(q, runner, answers),
                optional=not q.required or q.kind == "date" or q.default is not None,
                dispatch_action=q.kind in DISPATCHING_KINDS,
            )
        )
    return View(
        type="modal",
        callback_id=callback_id,
        title=_plain(title, TITLE),
        submit=_plain(submit, TITLE),
        close=_plain("Cancel", TITLE),
        blocks=blocks[:MAX_VIEW_BLOCKS],
        private_metadata=json.dumps(metadata)[:3000],
    )


def view_values(view: dict[str, Any]) -> dict[str, Any]:
    """What a modal's inputs hold now, by question id, as raw answers for the flow."""
    out: dict[str, Any] = {}
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    # A form from an older version of the bot (or a hand-made payload) may hold anything here:
    # what is not shaped like Slack's state is skipped, and the flow asks for it again.
    for block_id, actions in (values if isinstance(values, dict) else {}).items():
        if not isinstance(actions, dict) or not actions:
            continue
        element = actions.get(VALUE_ACTION) or next(iter(actions.values()))
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        if kind in ("static_select", "radio_buttons"):
            selected = element.get("selected_option")
            out[block_id] = selected.get("value") if isinstance(selected, dict) else None
        elif kind == "datepicker":
            out[block_id] = element.get("selected_date")
        else:
            out[block_id] = element.get("value")
    return out


def block_ids(view: dict[str, Any]) -> set[str]:
    """The block ids a submitted modal has: errors may be shown only beside these."""
    blocks = view.get("blocks")
    ids = (
        {b.get("block_id") for b in blocks if isinstance(b, dict)}
        if isinstance(blocks, list)
        else set()
    )
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    ids |= set(values) if isinstance(values, dict) else set()
    return {i for i in ids if isinstance(i, str)}


def notice_view(text: str, title: str = "Escalation") -> View:
    """A modal that only says something (in place of a form that cannot be used)."""
    return View(
        type="modal",
        title=_plain(title, TITLE),
        close=_plain("Close", TITLE),
        blocks=[SectionBlock(text=_mrkdwn(escape(text)))],
    )


def info_view(title: str, message: Message) -> View:
    """A read-only modal (details of a dispute)."""
    blocks = [b for b in message_blocks(message) if not isinstance(b, ActionsBlock)]
    return View(
        type="modal", title=_plain(title, TITLE), close=_plain("Close", TITLE), blocks=blocks
    )


def home_view(heading: str, rows: list[tuple[str, str]]) -> View:
    """The App Home tab: a person's open disputes."""
    blocks: list[Block] = [SectionBlock(text=_mrkdwn(f"*{escape(heading)}*"))]
    for title, detail in rows[: MAX_VIEW_BLOCKS - 1]:
        blocks.append(SectionBlock(text=_mrkdwn(f"*{escape(title)}*\n{escape(detail)}")))
    return View(type="home", blocks=blocks)
