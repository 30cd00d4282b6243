"""The composition root: builds the store, partnership, service and platforms from settings.

Nothing is built at import time; everything starts here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.adapters.base import Platform
from bot.clock import Clock, SystemClock
from bot.config import Partnership, Settings, load_partnership
from bot.conversation import Conversations
from bot.messages import fan_out
from bot.outbox import Dispatcher
from bot.service import Service
from store import db
from store.repository import Store


@dataclass
class Core:
    """The parts every way of running the bot shares."""

    settings: Settings
    store: Store
    partnership: Partnership
    service: Service
    conversations: Conversations

    def dispatcher(self, platforms: Sequence[Platform]) -> Dispatcher:
        """The outbox sender for these platforms; parked messages are reported to the admins."""
        return Dispatcher(
            self.store,
            platforms,
            self.service.clock,
            admins=lambda: [p.id for p in self.service.directory.holding("admin")],
        )


def build_core(settings: Settings, *, clock: Clock | None = None, migrate: bool = True) -> Core:
    """Load the partnership, bring the database up to date, and wire the service."""
    partnership = load_partnership(settings.escalation_config)
    if migrate:
        db.upgrade(settings.database_url)
    store = Store(settings.database_url)
    channels = _channel_platforms(settings, partnership)
    if any(len(names) > 1 for names in channels.values()):
        store.route = lambda messages: fan_out(messages, channels)
    service = Service(store, partnership, clock or SystemClock())
    return Core(settings, store, partnership, service, Conversations(service))


def _channel_platforms(settings: Settings, partnership: Partnership) -> dict[str, list[str]]:
    """For each partnership channel, the enabled platforms it is configured on."""
    enabled = {"slack": settings.slack_enabled, "teams": settings.teams_enabled}
    return {
        name: [p for p in ("slack", "teams") if enabled[p] and getattr(ids, p)]
        for name, ids in partnership.config.channels.items()
    }
