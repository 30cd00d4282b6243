"""Neutral outgoing messages: text, facts, buttons, the thread they belong to, who receives them.

Pure domain: no platform types. Text here is plain (no markup); each adapter escapes all of it
for its platform, so anything a user typed is echoed literally and can ping no one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal


class ActionId(StrEnum):
    """Every button and callback id the bot uses, in one place."""

    ACKNOWLEDGE = "acknowledge"
    ADD_NOTE = "add_note"
    ESCALATE = "escalate"
    PROPOSE_RESOLUTION = "propose_resolution"
    CONFIRM_RESOLUTION = "confirm_resolution"
    REJECT_RESOLUTION = "reject_resolution"
    RECORD_DELAY_REASON = "record_delay_reason"
    RECORD_LEARNING = "record_learning"
    WITHDRAW = "withdraw"
    REVIEW_ACTIONS = "review_actions"
    SNOOZE = "snooze"
    VIEW_DETAILS = "view_details"
    SEND_RECORD = "send_record"


BUTTON_LABELS = {
    ActionId.ACKNOWLEDGE: "Acknowledge",
    ActionId.ADD_NOTE: "Add note",
    ActionId.ESCALATE: "Escalate",
    ActionId.PROPOSE_RESOLUTION: "Propose resolution",
    ActionId.CONFIRM_RESOLUTION: "Confirm resolution",
    ActionId.REJECT_RESOLUTION: "Reject resolution",
    ActionId.RECORD_DELAY_REASON: "Give reason for delay",
    ActionId.RECORD_LEARNING: "Record learning",
    ActionId.WITHDRAW: "Withdraw",
    ActionId.REVIEW_ACTIONS: "Review agreed actions",
    ActionId.SNOOZE: "Remind me tomorrow",
    ActionId.VIEW_DETAILS: "View details",
    ActionId.SEND_RECORD: "Send me the record",
}


@dataclass(frozen=True)
class Button:
    """A button acting on one dispute."""

    action: ActionId
    ref: str
    style: Literal["primary", "danger"] | None = None

    @property
    def label(self) -> str:
        """The button's text."""
        return BUTTON_LABELS[self.action]


@dataclass(frozen=True)
class Recipient:
    """A person (by directory id) or a partnership channel ('disputes' or 'oversight')."""

    kind: Literal["person", "channel"]
    id: str

    @classmethod
    def person(cls, person_id: str) -> Recipient:
        """A directory person."""
        return cls("person", person_id)

    @classmethod
    def channel(cls, name: str = "disputes") -> Recipient:
        """A partnership channel."""
        return cls("channel", name)


MessageKind = Literal["direct", "thread_root", "thread", "digest", "reply"]


@dataclass
class Message:
    """One outgoing message, rendered later by the recipient's platform."""

    recipient: Recipient
    text: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    ref: str | None = None
    kind: MessageKind = "direct"
    key: str = ""
    # Set when a channel post must go through one platform in particular (a partnership
    # with its channel on both Slack and Teams gets a copy on each).
    platform: str | None = None

    def to_data(self) -> dict[str, Any]:
        """JSON-ready data, for the outbox."""
        return {
            "recipient": {"kind": self.recipient.kind, "id": self.recipient.id},
            "text": self.text,
            "facts": [list(f) for f in self.facts],
            "buttons": [
                {"action": b.action.value, "ref": b.ref, "style": b.style} for b in self.buttons
            ],
            "ref": self.ref,
            "kind": self.kind,
            "key": self.key,
            "platform": self.platform,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Message:
        """Rebuild from `to_data`."""
        return cls(
            recipient=Recipient(data["recipient"]["kind"], data["recipient"]["id"]),
            text=data["text"],
            facts=[(f[0], f[1]) for f in data.get("facts", [])],
            buttons=[
                Button(ActionId(b["action"]), b["ref"], b.get("style"))
                for b in data.get("buttons", [])
            ],
            ref=data.get("ref"),
            kind=data.get("kind", "direct"),
            key=data.get("key", ""),
            platform=data.get("platform"),
        )


def fan_out(messages: list[Message], channels: dict[str, list[str]]) -> list[Message]:
    """A copy of each channel post for every platform its channel is on, when several are.

    `channels` maps a partnership channel name to the platforms carrying it. Each copy keeps
    the same thread order; each platform keeps its own thread of the dispute.
    """
    out: list[Message] = []
    for message in messages:
        platforms = (
            channels.get(message.recipient.id, []) if message.recipient.kind == "channel" else []
        )
        if len(platforms) < 2 or message.platform is not None:
            out.append(message)
            continue
        out += [
            replace(message, platform=name, key=f"{message.key}@{name}" if message.key else "")
            for name in platforms
        ]
    return out


_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x1b"
    # Bidirectional embeddings, overrides and isolates: they can make a reference or a name
    # read differently from what it is (the "Trojan Source" trick). The plain left-to-right
    # and right-to-left marks (U+200E, U+200F) stay: names in Arabic or Hebrew script use them.
    r"\u202a-\u202e\u2066-\u2069"
    # Invisible characters that make two identical-looking texts differ: zero-width space,
    # word joiner, invisible operators, byte-order mark, Mongolian vowel separator. The
    # zero-width (non-)joiners stay: Persian and Indic scripts and emoji need them.
    r"\u200b\u2060-\u2064\ufeff\u180e]"
)


def plain(text: str) -> str:
    """Text safe to show anywhere: control, bidi-override and invisible characters removed,
    Unicode normalised."""
    return _CONTROL.sub("", unicodedata.normalize("NFC", text))


def clip(text: str, limit: int) -> str:
    """Shorten text to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
