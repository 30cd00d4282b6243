"""Who the bot cannot reach yet: Teams people who have never opened the bot.

A bot cannot message anyone first in Teams. These functions name the people who still have
to open the bot once: for `check-config`, for a dispute's channel post, and for the digest.
May import the store and the platforms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.adapters.base import Platform
from bot.adapters.teams.platform import PLATFORM
from bot.config import Partnership, Settings
from bot.directory import Directory, Person
from bot.messages import Message, Recipient
from store import conversation_refs as refs
from store.repository import NotFound, Store


def uses_teams(person: Person, *, slack_enabled: bool) -> bool:
    """Whether Teams is how the bot reaches this person."""
    if person.slack_id:
        return False
    return bool(person.teams_id) or not slack_enabled


def still_to_open(directory: Directory, store: Store, *, slack_enabled: bool) -> list[Person]:
    """Teams people with no chat with the bot yet, by agency and name."""
    with store.reading() as session:
        met_ids = refs.people_met(session, PLATFORM, "user:")
        met_keys = refs.keys_with_prefix(session, PLATFORM, "user:") | refs.keys_with_prefix(
            session, PLATFORM, "member:"
        )
        met_ids |= refs.people_met(session, PLATFORM, "member:")
    waiting = [
        p
        for p in directory
        if uses_teams(p, slack_enabled=slack_enabled)
        and p.id not in met_ids
        and not (p.teams_id and {f"user:{p.teams_id}", f"member:{p.teams_id}"} & met_keys)
    ]
    return sorted(waiting, key=lambda p: (directory.agency_name(p.agency), p.name))


def reachable(person: Person, platforms: Sequence[Platform]) -> bool:
    """Whether any platform can deliver a direct message to the person."""
    probe = Message(Recipient.person(person.id), "")
    return any(platform.can_reach(probe) for platform in platforms)


def dispute_people(store: Store, directory: Directory, ref: str) -> list[Person]:
    """The people a dispute's messages go to now: the parties, the raiser, the named practitioner."""
    try:
        with store.reading() as session:
            dispute = store.load(session, ref)
    except NotFound:
        return []
    people = list(dispute.parties(directory))
    for person_id in (dispute.details.raised_by, dispute.details.receiving_person):
        person = directory.get(person_id)
        if person is not None and person not in people:
            people.append(person)
    return people


def waiting_for(
    store: Store,
    directory: Callable[[], Directory],
    platforms: Callable[[], Sequence[Platform]],
) -> Callable[[Message], list[Person]]:
    """For a channel post: the people it concerns whom no platform can reach yet."""

    def waiting(message: Message) -> list[Person]:
        d = directory()
        if message.kind == "thread_root" and message.ref:
            people = dispute_people(store, d, message.ref)
        elif message.kind == "digest":
            people = list(d)
        else:
            return []
        out = [p for p in people if not reachable(p, platforms())]
        # Those the directory says are on Teams first: they can be @mentioned.
        return sorted(out, key=lambda p: (not p.teams_id, d.agency_name(p.agency), p.name))

    return waiting


def check_lines(partnership: Partnership, settings: Settings) -> list[str]:
    """What `check-config` says about Teams: settings, channels, and who must open the bot."""
    lines: list[str] = []
    if not settings.microsoft_app_tenant_id:
        lines.append(
            "warning: MICROSOFT_APP_TENANT_ID is not set: the bot runs as a multi-tenant app "
            "(new Azure Bot registrations are single-tenant: set the tenant id)"
        )
    channels = {name: ids.teams for name, ids in partnership.config.channels.items() if ids.teams}
    for name in ("disputes", "oversight"):
        channel = channels.get(name)
        if channel is None:
            lines.append(f"warning: no Teams channel for '{name}' in the partnership config")
        elif not channel.startswith("19:"):
            lines.append(
                f"warning: the Teams channel for '{name}' ({channel[:60]}) does not look like a "
                "channel id (19:...@thread.tacv2)"
            )
    store = Store(settings.database_url)
    try:
        waiting = still_to_open(partnership.directory, store, slack_enabled=settings.slack_enabled)
    except Exception as exc:  # an empty or unmigrated database: say so, don't fail the check
        lines.append(
            f"warning: could not read who has opened the bot in Teams ({exc.__class__.__name__}); "
            "run `escalation-bot db upgrade`"
        )
        return lines
    finally:
        store.dispose()
    d = partnership.directory
    if waiting:
        lines.append(
            f"Teams: {len(waiting)} {'person has' if len(waiting) == 1 else 'people have'} "
            "still to open the bot once (it cannot message anyone first):"
        )
        lines += [f"    {p.name} ({d.agency_name(p.agency)})" for p in waiting]
    else:
        lines.append("Teams: everyone who uses Teams has opened the bot.")
    return lines
