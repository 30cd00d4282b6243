"""Bot Framework tokens already checked, so the same token is not checked again on every turn.

The Bot Framework service signs one token and sends it, unchanged, with every activity for
about an hour. botbuilder checks it afresh each time: PyJWT parses it five times (each time
testing every character of every segment in Python) and verifies its RSA signature, about
0.8 ms of event-loop CPU per activity for a 600-character token and more for Microsoft's
longer ones: a fifth of what a bare bot spends on a message.

The check's answer depends only on the request's Authorization header, its channel id and its
service URL (a token is bound to one service URL by its `serviceurl` claim), the signing keys
and the time. So a successful check is kept for exactly those three, until the token expires
and never longer than `LIFE`. botbuilder itself keeps the signing keys for a day, so keeping
an answer five minutes accepts nothing a key change would have refused in that time. A failed
check is never kept, an activity with no token is never answered from here, and a kept answer
is used only for the same header, channel and service URL, byte for byte.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.adapters.teams.kept import Kept

LIFE = 300.0  # seconds a checked token is trusted without checking it again
KEPT = 256  # tokens kept: one per service URL and hour is the usual need

Check = Callable[[Any, str], Awaitable[Any]]


@dataclass(frozen=True)
class _Checked:
    result: Any
    until: float


class CheckedTokens:
    """Successful token checks, by (Authorization header, channel id, service URL)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._checked: Kept[tuple[str, str, str], _Checked] = Kept(KEPT)

    async def check(self, activity: Any, auth_header: str, check: Check) -> Any:
        """`check(activity, auth_header)`'s answer: kept from an earlier call, or found now."""
        if not auth_header:
            return await check(activity, auth_header)  # no token: botbuilder's own rules
        key = (auth_header, str(activity.channel_id or ""), str(activity.service_url or ""))
        now = self._clock()
        kept = self._checked.get(key)
        if kept is not None and now < kept.until:
            return kept.result
        self._checked.drop(key)
        result = await check(activity, auth_header)  # raises if the token is refused
        expires = _expiry(result)
        if expires is not None and now < expires:
            self._checked.put(key, _Checked(result, min(expires, now + LIFE)))
        return result

    def __len__(self) -> int:
        return len(self._checked)


def _expiry(result: Any) -> float | None:
    """When the checked token expires (its `exp` claim), if it says."""
    claims = getattr(getattr(result, "claims_identity", None), "claims", None)
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
