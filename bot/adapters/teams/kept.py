"""A small table by key that keeps only the most recently used entries."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """Entries by key, the least recently used dropped once there are more than `bound`.

    The bound keeps a flood of (authenticated) activities naming odd service URLs or tokens
    from growing a table without limit.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The entry for `key`, now the most recently used; None if there is none."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: K, entry: V) -> None:
        """Keep `entry` for `key`, dropping the least recently used beyond the bound."""
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.bound:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        """Forget `key`, if kept."""
        self._entries.pop(key, None)

    async def get_or_build(self, key: K, build: Callable[[], Awaitable[V]]) -> V:
        """The entry kept for `key`, built with `build` the first time."""
        entry = self.get(key)
        if entry is None:
            entry = await build()
            self.put(key, entry)
        return entry

    def __len__(self) -> int:
        return len(self._entries)
