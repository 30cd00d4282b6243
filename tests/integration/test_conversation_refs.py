"""Stored conversation references (store/conversation_refs.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.messages import Message, Recipient
from store import conversation_refs as refs
from store import db
from store.models import OutboxRow
from store.repository import Store

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    db.upgrade(db_url)
    built = Store(db_url)
    yield built
    built.dispose()


def _ref(conversation: str) -> dict[str, object]:
    return {"conversation": {"id": conversation}, "serviceUrl": "https://smba.example/uk/"}


def test_the_latest_reference_is_kept_and_a_known_person_is_not_forgotten(store: Store) -> None:
    with store.unit() as session:
        first = refs.save_reference(
            session,
            platform="teams",
            key="user:aad-1",
            reference=_ref("a:1"),
            person_id="ben.carter",
            now=NOW,
        )
        again = refs.save_reference(
            session,
            platform="teams",
            key="user:aad-1",
            reference=_ref("a:2"),
            now=NOW + timedelta(minutes=1),
        )
    assert (first, again) == (True, False)
    with store.unit() as session:
        assert refs.reference(session, "teams", "user:aad-1") == _ref("a:2")
        assert refs.person_keys(session, "teams", "ben.carter") == ["user:aad-1"]
        assert refs.people_met(session, "teams", "user:") == {"ben.carter"}
        assert refs.reference(session, "slack", "user:aad-1") is None


def test_the_first_stored_key_wins_in_the_order_asked(store: Store) -> None:
    with store.unit() as session:
        for key in ("member:aad-1", "user:aad-1"):
            refs.save_reference(session, platform="teams", key=key, reference=_ref(key), now=NOW)
    with store.unit() as session:
        found = refs.first_reference(session, "teams", ["user:aad-9", "user:aad-1", "member:aad-1"])
        assert found == ("user:aad-1", _ref("user:aad-1"))
        assert refs.first_reference(session, "teams", []) is None
        assert refs.keys_with_prefix(session, "teams", "member:") == {"member:aad-1"}
        # A prefix is matched literally, never as a LIKE pattern.
        assert refs.keys_with_prefix(session, "teams", "user%") == set()


def test_the_most_recent_reference_of_a_kind_is_found(store: Store) -> None:
    with store.unit() as session:
        refs.save_reference(
            session, platform="teams", key="channel:a", reference=_ref("a"), now=NOW
        )
        refs.save_reference(
            session,
            platform="teams",
            key="channel:b",
            reference=_ref("b"),
            now=NOW + timedelta(hours=1),
        )
    with store.unit() as session:
        assert refs.any_reference(session, "teams", "channel:") == _ref("b")
        assert refs.any_reference(session, "teams", "user:") is None


def test_only_messages_set_aside_as_unreachable_are_released(store: Store) -> None:
    messages = [
        Message(Recipient.person("ben.carter"), "for Ben, unreachable", key="k1"),
        Message(Recipient.person("ben.carter"), "for Ben, refused", key="k2"),
        Message(Recipient.person("dan.fielding"), "for Dan, unreachable", key="k3"),
    ]
    with store.unit() as session:
        store.enqueue(session, messages, now=NOW)
    errors = {"k1": refs.UNREACHABLE, "k2": "Teams said 403", "k3": refs.UNREACHABLE}
    with store.unit() as session:
        for row in session.execute(select(OutboxRow)).scalars():
            row.status, row.last_error, row.attempts = "parked", errors[row.key], 1
    later = NOW + timedelta(days=1)
    with store.unit() as session:
        assert refs.release_unreachable(session, "ben.carter", now=later) == 1
    with store.unit() as session:
        rows = {r.key: r for r in session.execute(select(OutboxRow)).scalars()}
    assert rows["k1"].status == "pending" and rows["k1"].next_attempt_at == later
    assert rows["k1"].attempts == 0
    assert rows["k2"].status == "parked" and rows["k3"].status == "parked"
