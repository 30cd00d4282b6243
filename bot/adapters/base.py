"""The Platform protocol every adapter implements, and what a send can report back.

Imports only the domain's message types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.messages import Message


@dataclass(frozen=True)
class Delivered:
    """A message reached the platform; `thread_id` is set when it started a thread."""

    message_id: str | None = None
    thread_id: str | None = None


class SendFailed(Exception):
    """The platform refused or could not be reached; `retry_after` in seconds if it said."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, permanent: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.permanent = permanent


class Platform(Protocol):
    """Somewhere messages can be sent: Slack, Teams, or the console."""

    name: str

    def can_reach(self, message: Message) -> bool:
        """Whether this platform can deliver to the message's recipient."""
        ...

    async def send(
        self, message: Message, *, thread_id: str | None, maybe_sent: bool = False
    ) -> Delivered:
        """Deliver one message (in `thread_id` when given); raise SendFailed if it cannot.

        `maybe_sent` says an earlier sender died mid-send: the platform may already have this
        message (its `key` says which), and should not show it twice.
        """
        ...
