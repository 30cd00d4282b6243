"""A fake Bot Connector service: a real aiohttp server on 127.0.0.1 recording what a bot sends.

It answers what a Teams bot calls on its ``serviceUrl``::

    POST /v3/conversations                                  create a personal chat
    POST /v3/conversations/{conversation}/activities        send (a new post, or a message)
    POST /v3/conversations/{conversation}/activities/{id}   reply to an activity
    PUT  /v3/conversations/{conversation}/activities/{id}   update an activity in place
    GET  /v3/conversations/{conversation}/members/{member}  who a member is (their email)

and, for the bot's token checks, an OpenID configuration and its signing keys::

    GET  /openid-{id}/.well-known/openid-configuration
    GET  /openid-{id}/keys

(`{id}` is the fake's own: botbuilder keeps a metadata URL's keys for a day, process-wide).

``token()`` signs a JWT as the Bot Framework service would (issuer https://api.botframework.com,
audience the bot's app id, ``serviceurl`` claim), with a key the fake publishes; tests point
botbuilder's ``ChannelValidation.open_id_metadata_endpoint`` at ``openid_url``, so no request
ever goes to a Microsoft host.

The server runs in a thread of its own, with its own event loop, like a remote service:
botbuilder fetches the OpenID metadata with a blocking ``requests.get`` from inside the bot's
event loop, which a server on that same loop could never answer.

What it checks: the bot's own token on every call (``Authorization: Bearer <bot_token>``),
and every Adaptive Card against the published 1.5 schema with Teams' ``msteams`` extensions
set aside, the mention entities checked on their own. A problem is answered as Teams would
(400/401) and kept in ``violations``, so a test can assert there were none. ``fail_next``
makes the next calls fail, e.g. with 429 and a ``Retry-After``. A benchmark, which times the
bot and not this fake, passes ``check_cards_later``: the schema check (9 ms for a short card,
70 ms for the intake form) then waits for ``check_cards()``, and each card is answered at once.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import jsonschema
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from shared_files import shared

__all__ = [
    "CARD",
    "BotConnectorRecord",
    "FakeBotConnector",
    "Member",
    "card_problems",
    "without_teams_extensions",
]

JsonDict = dict[str, Any]
CARD = "application/vnd.microsoft.card.adaptive"
ISSUER = "https://api.botframework.com"
SCHEMA_PATH = shared("schemas/adaptive-card-1.5.json")
KEY_ID = "fake-connector-key"


# --- Adaptive Card checks --------------------------------------------------------------------


def without_teams_extensions(card: JsonDict) -> JsonDict:
    """The card as the published schema knows it: Teams' top-level `msteams` set aside."""
    plain = copy.deepcopy(card)
    plain.pop("msteams", None)
    return plain


_validator: jsonschema.Draft6Validator | None = None


def _schema_validator() -> jsonschema.Draft6Validator:
    global _validator
    if _validator is None:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
        _validator = jsonschema.Draft6Validator(schema)
    return _validator


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "title", "value") and isinstance(value, str):
                yield value
            elif key != "msteams":
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


def card_problems(card: JsonDict) -> list[str]:
    """Why Teams would reject or mis-render this card: schema errors, bad mention entities."""
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(card)'}: {error.message[:300]}"
        for error in _schema_validator().iter_errors(without_teams_extensions(card))
    ]
    if card.get("version") != "1.5":
        problems.append(f"version is {card.get('version')!r}, not '1.5'")
    msteams = card.get("msteams", {})
    if not isinstance(msteams, dict) or set(msteams) - {"width", "entities"}:
        problems.append(f"unexpected msteams extension: {msteams!r}")
        return problems
    if msteams.get("width") not in (None, "Full"):
        problems.append(f"msteams.width is {msteams.get('width')!r}")
    texts = list(_texts(card.get("body", [])))
    for i, entity in enumerate(msteams.get("entities", [])):
        where = f"msteams/entities/{i}"
        text = entity.get("text", "")
        mentioned = entity.get("mentioned") or {}
        if entity.get("type") != "mention":
            problems.append(f"{where}: type is {entity.get('type')!r}")
        if not (text.startswith("<at>") and text.endswith("</at>")):
            problems.append(f"{where}: text {text!r} is not <at>...</at>")
        if not mentioned.get("id") or not mentioned.get("name"):
            problems.append(f"{where}: mentioned needs an id and a name")
        if not any(text in t for t in texts):
            problems.append(f"{where}: {text!r} appears nowhere in the card's text")
    return problems


# --- What the fake records -------------------------------------------------------------------


@dataclass
class BotConnectorRecord:
    """One activity the bot sent (POST) or replaced (PUT)."""

    method: str
    conversation_id: str
    activity_id: str
    activity: JsonDict
    reply_to: str | None = None
    authorization: str | None = None
    # When it reached the fake (time.monotonic(), the same clock in every process on a
    # machine): the latency benchmark's "work done".
    arrived: float = field(default_factory=time.monotonic)

    @property
    def cards(self) -> list[JsonDict]:
        """The Adaptive Cards the activity carries."""
        return [
            a.get("content") or {}
            for a in self.activity.get("attachments") or []
            if a.get("contentType") == CARD
        ]

    @property
    def card(self) -> JsonDict:
        """The one Adaptive Card the activity carries."""
        (card,) = self.cards
        return card

    @property
    def shown(self) -> str:
        """All the text of the activity and its cards, for assertions."""
        return json.dumps(self.activity, ensure_ascii=False)

    def inputs(self) -> dict[str, JsonDict]:
        """The card's inputs by id."""
        return {
            element["id"]: element
            for element in self.card.get("body", [])
            if str(element.get("type", "")).startswith("Input.")
        }

    def submit_data(self) -> list[JsonDict]:
        """The data of each Action.Submit on the card."""
        return [
            a.get("data") or {}
            for a in self.card.get("actions", [])
            if a.get("type") == "Action.Submit"
        ]


@dataclass
class Member:
    """A Teams user the connector can describe."""

    id: str
    aad_object_id: str
    name: str
    email: str

    def account(self) -> JsonDict:
        return {"id": self.id, "name": self.name, "aadObjectId": self.aad_object_id}


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    method: str
    times: int
    body: JsonDict = field(default_factory=dict)


class FakeBotConnector:
    """The Bot Connector service on 127.0.0.1, recording what the bot sends."""

    def __init__(
        self, *, app_id: str, bot_token: str = "fake-bot-token", check_cards_later: bool = False
    ) -> None:
        self.app_id = app_id
        self.bot_token = bot_token
        self.check_cards_later = check_cards_later
        self._unchecked: list[tuple[str, JsonDict]] = []
        self.records: list[BotConnectorRecord] = []
        self.created: list[JsonDict] = []
        self.violations: list[str] = []
        self.members: dict[str, Member] = {}
        self.requests: list[tuple[str, str]] = []
        # Where each API call came from: distinct peers are the connections the bot opened.
        self.peers: list[Any] = []
        self._failures: list[_Failure] = []
        # While cleared, POSTs and PUTs to activities wait (`hold`): a send caught mid-way.
        self._open = threading.Event()
        self._open.set()
        self.held: list[str] = []  # "POST conversation/activity" of each call waiting
        self._ids = itertools.count(1_700_000_000_001)
        self._lock = threading.Lock()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # botbuilder keeps each OpenID metadata URL's keys for a day, process-wide: a later
        # fake given a port an earlier one had would find that one's key under the same URL
        # (a valid token refused as badly signed). Each fake's URL is its own.
        self._openid_path = f"openid-{uuid.uuid4().hex[:12]}"
        self._other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # ---- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving in a thread of its own; returns once the port is open."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._runner = web.AppRunner(self._app(), access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                self._port = int(self._runner.addresses[0][1])
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-bot-connector", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        if self._port is None:
            raise RuntimeError("the fake Bot Connector did not start")

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FakeBotConnector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeBotConnector:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def service_url(self) -> str:
        """The serviceUrl activities carry, so the bot answers here."""
        assert self._port is not None, "start the fake first"
        return f"http://127.0.0.1:{self._port}/"

    @property
    def openid_url(self) -> str:
        """Where botbuilder should fetch the OpenID metadata that signs tokens."""
        return f"{self.service_url}{self._openid_path}/.well-known/openid-configuration"

    # ---- set-up by tests ---------------------------------------------------------------------

    def add_member(self, user_id: str, aad_object_id: str, name: str, email: str) -> Member:
        """A Teams user the member lookup knows (with the email the bot matches on)."""
        member = Member(user_id, aad_object_id, name, email)
        self.members[user_id] = member
        return member

    def fail_next(
        self,
        status: int = 429,
        *,
        retry_after: float | None = None,
        method: str = "POST",
        times: int = 1,
    ) -> None:
        """Fail the next `times` calls of `method` (to activities) with `status`."""
        code = {429: "TooManyRequests", 403: "BotNotInConversationRoster"}.get(status, "Error")
        with self._lock:
            self._failures.append(
                _Failure(status, retry_after, method, times, {"error": {"code": code}})
            )

    def hold(self) -> None:
        """Make calls to activities wait at the door until `release`."""
        self._open.clear()

    def release(self) -> None:
        """Let the held calls, and those after, through."""
        self._open.set()

    async def _door(self, request: web.Request) -> None:
        if self._open.is_set():
            return
        what = f"{request.method} {request.match_info['conversation']}"
        if "activity" in request.match_info:
            what += f"/{request.match_info['activity']}"
        with self._lock:
            self.held.append(what)
        try:
            await asyncio.to_thread(self._open.wait, 30)
        finally:
            with self._lock:
                self.held.remove(what)

    def token(
        self,
        *,
        audience: str | None = None,
        service_url: str | None = None,
        issuer: str = ISSUER,
        expires_in: int = 3600,
        signed_by_someone_else: bool = False,
    ) -> str:
        """A token as the Bot Framework service signs it for the bot."""
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience or self.app_id,
            "serviceurl": service_url or self.service_url,
            "nbf": now - 60,
            "exp": now + expires_in,
        }
        key = self._other_key if signed_by_someone_else else self._key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": KEY_ID})

    def check_cards(self, workers: int = 1) -> list[str]:
        """With ``check_cards_later``: check the cards received so far; their problems.

        Each distinct card is checked once; with `workers` > 1, in that many processes (a
        benchmark's thousands of cards take seconds each way, one CPU each).
        """
        with self._lock:
            unchecked, self._unchecked = self._unchecked, []
        distinct: dict[str, JsonDict] = {}
        keys = []
        for _, card in unchecked:
            text = json.dumps(card, sort_keys=True)
            distinct.setdefault(text, card)
            keys.append(text)
        if workers > 1 and len(distinct) > 1:
            # Spawned, not forked: this process runs the fake's server in other threads.
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
                verdicts = list(pool.map(card_problems, distinct.values(), chunksize=16))
        else:
            verdicts = [card_problems(card) for card in distinct.values()]
        seen = dict(zip(distinct, verdicts, strict=True))
        found: list[str] = []
        for (where, _), text in zip(unchecked, keys, strict=True):
            found += [f"{where}/{p}" for p in seen[text]]
        for problem in found:
            self._violation(problem)
        return found

    # ---- what was sent -----------------------------------------------------------------------

    def sent(self) -> list[BotConnectorRecord]:
        """Every POST and PUT, in order."""
        with self._lock:
            return list(self.records)

    def posts(self, conversation_id: str | None = None) -> list[BotConnectorRecord]:
        """New messages (POSTs), optionally in one conversation."""
        return [
            r
            for r in self.sent()
            if r.method == "POST"
            and (conversation_id is None or r.conversation_id == conversation_id)
        ]

    def updates(self, conversation_id: str | None = None) -> list[BotConnectorRecord]:
        """Updates in place (PUTs), optionally in one conversation."""
        return [
            r
            for r in self.sent()
            if r.method == "PUT"
            and (conversation_id is None or r.conversation_id == conversation_id)
        ]

    def latest(self, conversation_id: str, activity_id: str) -> BotConnectorRecord | None:
        """What an activity shows now: its last update, or the post itself."""
        found = [
            r
            for r in self.sent()
            if r.conversation_id.split(";")[0] == conversation_id.split(";")[0]
            and r.activity_id == activity_id
        ]
        return found[-1] if found else None

    # ---- the service ------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(f"/{self._openid_path}/.well-known/openid-configuration", self._openid)
        app.router.add_get(f"/{self._openid_path}/keys", self._keys)
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._post)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._post)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._put)
        app.router.add_get("/v3/conversations/{conversation}/members/{member}", self._member)
        return app

    async def _openid(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": ISSUER,
                "jwks_uri": f"{self.service_url}{self._openid_path}/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        jwk = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update(kid=KEY_ID, use="sig", endorsements=["msteams"])
        return web.json_response({"keys": [jwk]})

    def _authorised(self, request: web.Request) -> web.Response | None:
        with self._lock:
            self.requests.append((request.method, request.path))
            self.peers.append(
                request.transport.get_extra_info("peername") if request.transport else None
            )
        header = request.headers.get("Authorization")
        if header != f"Bearer {self.bot_token}":
            self._violation(f"{request.method} {request.path}: Authorization is {header!r}")
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "bad bot token"}}, status=401
            )
        return None

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def _failure(self, method: str) -> web.Response | None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method and failure.times > 0:
                    failure.times -= 1
                    headers = (
                        {"Retry-After": f"{failure.retry_after:g}"}
                        if failure.retry_after is not None
                        else {}
                    )
                    return web.json_response(failure.body, status=failure.status, headers=headers)
        return None

    def _check_activity(self, where: str, activity: Any) -> web.Response | None:
        problems: list[str] = []
        if not isinstance(activity, dict):
            problems.append("the body is not an activity")
        else:
            if activity.get("type") != "message":
                problems.append(f"type is {activity.get('type')!r}")
            for i, attachment in enumerate(activity.get("attachments") or []):
                if attachment.get("contentType") != CARD:
                    continue
                if self.check_cards_later:
                    with self._lock:
                        self._unchecked.append(
                            (f"{where}: attachments/{i}/content", attachment.get("content") or {})
                        )
                    continue
                problems += [
                    f"attachments/{i}/content/{p}"
                    for p in card_problems(attachment.get("content") or {})
                ]
            if not activity.get("attachments") and not activity.get("text"):
                problems.append("an empty message")
        if problems:
            for problem in problems:
                self._violation(f"{where}: {problem}")
            return web.json_response(
                {"error": {"code": "BadArgument", "message": "; ".join(problems)[:500]}}, status=400
            )
        return None

    async def _post(self, request: web.Request) -> web.Response:
        await self._door(request)
        refused = self._authorised(request) or self._failure("POST")
        if refused is not None:
            return refused
        conversation = request.match_info["conversation"]
        activity = await request.json()
        refused = self._check_activity(f"POST {conversation}", activity)
        if refused is not None:
            return refused
        with self._lock:
            activity_id = str(next(self._ids))
            self.records.append(
                BotConnectorRecord(
                    "POST",
                    conversation,
                    activity_id,
                    activity,
                    reply_to=request.match_info.get("activity"),
                    authorization=request.headers.get("Authorization"),
                )
            )
        return web.json_response({"id": activity_id}, status=201)

    async def _put(self, request: web.Request) -> web.Response:
        await self._door(request)
        refused = self._authorised(request) or self._failure("PUT")
        if refused is not None:
            return refused
        conversation = request.match_info["conversation"]
        activity_id = request.match_info["activity"]
        activity = await request.json()
        refused = self._check_activity(f"PUT {conversation}/{activity_id}", activity)
        if refused is not None:
            return refused
        with self._lock:
            known = any(
                r.activity_id == activity_id
                and r.conversation_id.split(";")[0] == conversation.split(";")[0]
                for r in self.records
            )
        if not known:
            return web.json_response(
                {"error": {"code": "NotFound", "message": "no such activity"}}, status=404
            )
        with self._lock:
            self.records.append(
                BotConnectorRecord(
                    "PUT",
                    conversation,
                    activity_id,
                    activity,
                    authorization=request.headers.get("Authorization"),
                )
            )
        return web.json_response({"id": activity_id})

    async def _create(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        parameters = await request.json()
        members = parameters.get("members") or []
        if len(members) != 1 or not members[0].get("id"):
            self._violation(f"create conversation with members {members!r}")
            return web.json_response({"error": {"code": "BadArgument"}}, status=400)
        with self._lock:
            self.created.append(parameters)
        return web.json_response({"id": f"a:personal-{members[0]['id']}"}, status=201)

    async def _member(self, request: web.Request) -> web.Response:
        refused = self._authorised(request)
        if refused is not None:
            return refused
        member = self.members.get(request.match_info["member"])
        if member is None:
            return web.json_response({"error": {"code": "MemberNotFound"}}, status=404)
        return web.json_response(
            {
                **member.account(),
                "email": member.email,
                "userPrincipalName": member.email,
                "givenName": member.name.split()[0],
                "surname": member.name.split()[-1],
            }
        )
