"""Bot Framework authentication that builds its Bot Connector and token clients once, not per turn.

botbuilder's CloudAdapter asks for a new ConnectorClient and a new UserTokenClient on every
turn and every proactive send. Each is an msrest client: its configuration (two ConfigParsers,
a retry policy) costs about a millisecond of event-loop CPU to build, and its `requests`
sessions are new, so every reply opened a new connection to the Bot Connector (with a TLS
handshake, in production). The clients hold nothing of a turn: a client is fixed by the app
id it acts as, the service URL and the audience, and its credentials refresh their own token.
So they are kept, per key, and reused; msrest gives each worker thread its own `requests`
session, so sharing a client between turns in flight is safe.
"""

from __future__ import annotations

import json
from typing import Any

from botbuilder.integration.aiohttp import ConfigurationBotFrameworkAuthentication
from botframework.connector.auth import (
    AuthenticateRequestResult,
    ClaimsIdentity,
    ConnectorFactory,
)
from botframework.connector.auth.authentication_constants import AuthenticationConstants

from bot.adapters.teams.kept import Kept
from bot.adapters.teams.tokens import CheckedTokens

# Service URLs are one per region, so a few clients are expected.
KEPT = 32


def app_id_of(claims_identity: ClaimsIdentity) -> str:
    """The app id a turn acts as, found as botbuilder finds it (audience, else appid claim)."""
    app_id = claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
    if app_id is None:
        app_id = claims_identity.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
    return str(app_id or "")


class _KeptConnectors(ConnectorFactory):
    """botbuilder's connector factory for one app id, its clients kept by URL and audience."""

    def __init__(self, inner: ConnectorFactory, app_id: str, kept: Kept[Any, Any]) -> None:
        self._inner = inner
        self._app_id = app_id
        self._kept = kept

    async def create(self, service_url: str, audience: str | None = None) -> Any:
        """The Bot Connector client for this service URL and audience, built the first time."""
        # No audience means botbuilder's default scope (a proactive send): the same client as
        # a reply's, which names that scope.
        scope = audience or getattr(self._inner, "_to_channel_from_bot_oauth_scope", "")
        key = (self._app_id, service_url, str(scope or ""))

        async def build() -> Any:
            client = await self._inner.create(service_url, audience)
            plain_json_objects(client)
            unchecked_bodies(client)
            return client

        return await self._kept.get_or_build(key, build)


class KeptClientsAuthentication(ConfigurationBotFrameworkAuthentication):
    """ConfigurationBotFrameworkAuthentication, reusing its Bot Connector and token clients,
    and its answers for a token it has already checked (bot/adapters/teams/tokens.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connectors: Kept[tuple[str, ...], Any] = Kept(KEPT)
        self.token_clients: Kept[tuple[str, ...], Any] = Kept(KEPT)
        self.tokens = CheckedTokens()

    async def authenticate_request(
        self, activity: Any, auth_header: str
    ) -> AuthenticateRequestResult:
        """Check the request's token as botbuilder does, or as it did for this very token;
        the connector factory of the answer reuses clients."""
        result: AuthenticateRequestResult = await self.tokens.check(
            activity, auth_header, self._authenticate
        )
        return result

    async def _authenticate(self, activity: Any, auth_header: str) -> AuthenticateRequestResult:
        result = await super().authenticate_request(activity, auth_header)
        if result.connector_factory is not None and result.claims_identity is not None:
            result.connector_factory = _KeptConnectors(
                result.connector_factory, app_id_of(result.claims_identity), self.connectors
            )
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        """A connector factory for proactive sends, reusing clients."""
        return _KeptConnectors(
            super().create_connector_factory(claims_identity),
            app_id_of(claims_identity),
            self.connectors,
        )

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> Any:
        """The token client for the turn's app id, built the first time."""
        build = super().create_user_token_client
        return await self.token_clients.get_or_build(
            (app_id_of(claims_identity),), lambda: build(claims_identity)
        )


def quicker_connector_clients() -> None:
    """Make msrest's client set-up cheap: the same retry codes, found in a set, not a list.

    Every Bot Connector and token client msrest builds tests 999 status codes against a
    500-item list: 5 ms of CPU on the event loop each time. As a frozenset the codes are the
    same and the test is quick.
    """
    from msrest.universal_http.requests import ClientRetryPolicy

    codes = ClientRetryPolicy.safe_codes
    if not isinstance(codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(codes)  # type: ignore[assignment]


class SentCard(dict[str, Any]):
    """A card on its way out, built by bot/adapters/teams/cards.py for one send and never
    changed after: plain JSON (strings, numbers, booleans, lists and dicts) by construction.

    So botbuilder's deep copy of every activity it sends can share it rather than copy it
    (half a millisecond for the 8 kB intake form), and msrest can put it in the body as it is
    rather than walk it or copy it through json (`plain_json_objects`).
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> SentCard:
        return self


def plain_json_objects(client: Any) -> None:
    """Serialise a client's free-form JSON (a card, a submit's value) as JSON, not node by node.

    msrest walks an `object`-typed value (an Adaptive Card, a few hundred nodes) one node at
    a time in Python, type checks and all: about a millisecond of event-loop CPU per card sent.
    For plain JSON its result is a copy of the value, which json's C code makes in a fraction
    of that. Anything that is not plain JSON (a date, a model) still goes through msrest.

    Required, not only quicker: msrest itself writes a dict subclass (a `SentCard`) as a
    string. So a client whose msrest is not the one this was written for (botbuilder pins
    msrest 0.7) is refused here, at once, rather than sending broken cards.
    """
    serializer = getattr(client, "_serialize", None)
    types = getattr(serializer, "serialize_type", None)
    if not isinstance(types, dict) or "object" not in types:
        raise RuntimeError(
            "this msrest does not serialise as msrest 0.7 does (no serialize_type['object']); "
            "install the msrest version botbuilder requires"
        )
    walk = types["object"]

    def serialize_object(attr: Any, **kwargs: Any) -> Any:
        if type(attr) is SentCard:
            return attr  # plain JSON already, and not changed after it is sent
        if isinstance(attr, (dict, list)):
            try:
                return json.loads(json.dumps(attr, allow_nan=False))
            except (TypeError, ValueError):
                pass
        return walk(attr, **kwargs)

    types["object"] = serialize_object


def unchecked_bodies(client: Any) -> bool:
    """Skip msrest's check of each body against its models' constraints when they have none.

    Before serialising a body msrest walks it once more to check each value against its
    model's `_validation` rules (required, lengths, patterns): a third of the cost of sending a
    message. The Bot Connector's models (Activity and all it holds) declare no rules, so the
    walk can find nothing; Azure's own generated clients switch it off the same way. If a model
    ever declares a rule, the check stays on. True if it was switched off.
    """
    serializer: Any = getattr(client, "_serialize", None)
    models = getattr(serializer, "dependencies", None)
    if not isinstance(models, dict) or not hasattr(serializer, "client_side_validation"):
        return False  # not the msrest this was written for: left as it is
    if any(getattr(model, "_validation", None) for model in models.values()):
        return False
    serializer.client_side_validation = False
    return True
