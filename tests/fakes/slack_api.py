"""A fake Slack Web API: a real aiohttp server on 127.0.0.1 that checks what Slack would.

Point a real ``slack_sdk`` client at it::

    async with FakeSlackApi(token="xoxb-test") as api:
        client = AsyncWebClient(token="xoxb-test", base_url=api.base_url)
        await client.chat_postMessage(channel="C1", text="hello")
        assert api.messages[0].text == "hello"
        assert api.violations == []

slack_sdk sends even 127.0.0.1 requests through ``HTTPS_PROXY`` when it is set: clear the
proxy variables in tests that use this fake.

What it checks, like Slack:

- the token (``Authorization: Bearer``, or a ``token`` argument): ``not_authed`` /
  ``invalid_auth``;
- arguments from the query string, a form (``blocks``/``view``/``metadata`` as JSON strings)
  or a JSON body; required arguments per method (``invalid_arguments``, ``no_text``, ...);
- Block Kit: each ``blocks`` list through ``slack_sdk.models.blocks.Block.parse_all`` and each
  view through ``slack_sdk.models.views.View``, calling ``validate_json()`` and ``to_dict()``
  (which validates nested elements), plus its own walk of Slack's documented limits (50 blocks
  in a message, 100 in a view, 40,000 characters of message text, 3,000 of section text, 75 of
  button text, 255 for an action_id, action_ids unique within a block, block_ids unique within
  a message or view, 100 options in a select, 25 elements in an actions block, a modal title
  of 24 characters, 3,000 characters of private_metadata, ...).

A message that breaks them is answered ``invalid_blocks`` (``msg_too_long`` for text) and a
view ``invalid_arguments``, both with the reasons in ``errors`` and
``response_metadata.messages``; every malformed request is also kept in ``.violations`` so a
test can assert there were none. Failed lookups (``users_not_found``, ``message_not_found``,
``not_found``, ``hash_conflict``) are ordinary answers, not violations.

``conversations.history`` behaves as Slack's: replies in a thread are not in it (unless posted
with ``reply_broadcast``); they are in ``conversations.replies``. ``metadata`` is included only
with ``include_all_metadata``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

__all__ = [
    "FakeSlackApi",
    "RecordedEphemeral",
    "RecordedMessage",
    "RecordedView",
    "Violation",
    "check_blocks",
    "check_view",
]

JsonDict = dict[str, Any]

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
FIRST_TS_MICROS = 1_700_000_000_000_100
TS_STEP_MICROS = 100


# --- What the fake records -----------------------------------------------------------------


@dataclass
class Violation:
    """A request Slack would have rejected as malformed."""

    method: str
    error: str
    messages: list[str]


@dataclass
class RecordedMessage:
    """A message posted with ``chat.postMessage`` (and changed by ``chat.update``)."""

    channel: str
    ts: str
    text: str | None
    blocks: list[JsonDict] | None
    thread_ts: str | None = None
    metadata: JsonDict | None = None
    reply_broadcast: bool = False
    updates: int = 0
    args: JsonDict = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass
class RecordedEphemeral:
    """A message posted with ``chat.postEphemeral``."""

    channel: str
    user: str
    message_ts: str
    text: str | None
    blocks: list[JsonDict] | None
    thread_ts: str | None = None


@dataclass
class RecordedView:
    """One ``views.open``/``views.push``/``views.update``/``views.publish`` call that succeeded."""

    method: str
    id: str
    hash: str
    view: JsonDict
    user_id: str | None = None
    trigger_id: str | None = None
    external_id: str | None = None


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None
    drop: bool = False


class _ApiError(Exception):
    def __init__(
        self, error: str, messages: list[str] | None = None, *, violation: bool = False
    ) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.violation = violation


def _invalid(*messages: str) -> _ApiError:
    return _ApiError("invalid_arguments", list(messages), violation=True)


def _missing(name: str) -> _ApiError:
    return _invalid(f"[ERROR] missing required field: {name}")


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


# --- The server ----------------------------------------------------------------------------


class FakeSlackApi:
    """The Slack Web API methods the bot uses, on ``http://127.0.0.1:<port>/api/``."""

    def __init__(
        self,
        token: str = "xoxb-test",
        *,
        team_id: str = "T0TEST",
        team: str = "Test Partnership",
        bot_user_id: str = "U0BOT",
        bot_id: str = "B0BOT",
        app_id: str = "A0TEST",
        check_later: bool = False,
    ) -> None:
        # check_later: views and message blocks are checked by `check_deferred()`, after the
        # run, not while the bot waits for the answer (the latency benchmark: validating a
        # modal costs this fake milliseconds of CPU that the machine's bot would share).
        self.check_later = check_later
        self._unchecked: list[tuple[str, JsonDict]] = []
        self.token = token
        self.team_id = team_id
        self.team = team
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id

        self.calls: list[tuple[str, JsonDict]] = []
        # When each call arrived (time.monotonic(), as calls): for the latency benchmark.
        self.arrivals: list[float] = []
        # The client's address and port of each call, as calls: kept-alive connections show
        # as one port used again.
        self.peers: list[Any] = []
        self.messages: list[RecordedMessage] = []
        self.ephemerals: list[RecordedEphemeral] = []
        self.views: list[RecordedView] = []
        self.violations: list[Violation] = []
        # What the bot posted to slash commands' response_url (see `response_url`).
        self.responses: list[JsonDict] = []
        # Seconds each call takes before it is answered (a slow Slack, for shutdown tests).
        self.delay = 0.0
        self.users: dict[str, JsonDict] = {}

        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._ts_micros = FIRST_TS_MICROS - TS_STEP_MICROS
        self._view_seq = 0
        self._open_views: dict[str, RecordedView] = {}
        self._home_view_ids: dict[str, str] = {}
        self._used_triggers: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self.add_user(bot_user_id, "", "Escalation Bot", name="escalation-bot", is_bot=True)

    # --- Lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlackApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/response/{id}", self._respond)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlackApi is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For ``AsyncWebClient(base_url=...)``: the trailing slash matters."""
        return f"http://127.0.0.1:{self.port}/api/"

    # --- Test controls -----------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        email: str,
        real_name: str,
        *,
        name: str | None = None,
        tz: str = "Europe/London",
        is_bot: bool = False,
        deleted: bool = False,
    ) -> JsonDict:
        """Add (or replace) a workspace member for ``users.info``/``users.lookupByEmail``."""
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name or (email.split("@")[0] if email else user_id.lower()),
            "real_name": real_name,
            "deleted": deleted,
            "is_bot": is_bot,
            "tz": tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {
                "real_name": real_name,
                "display_name": real_name,
                "email": email,
                "team": self.team_id,
            },
        }
        self.users[user_id] = user
        return user

    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``.

        ``ratelimited`` defaults to HTTP 429 with ``Retry-After: 30``; other errors to HTTP 200,
        as Slack answers them. The failed call changes nothing.
        """
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if retry_after is None and status == 429:
            retry_after = 30
        for _ in range(times):
            self._failures[method].append(_Failure(error, status, retry_after))

    def drop_next(self, method: str, *, times: int = 1) -> None:
        """Carry out the next ``times`` calls of ``method``, then drop the connection before
        answering: the client sees a disconnect although Slack did the work (a message sent
        just before a crash or timeout)."""
        for _ in range(times):
            self._failures[method].append(_Failure("", 0, None, drop=True))

    def calls_to(self, method: str) -> list[JsonDict]:
        """The arguments of every call of ``method``, oldest first."""
        return [args for name, args in self.calls if name == method]

    def messages_in(self, channel: str) -> list[RecordedMessage]:
        """The messages posted in ``channel`` (thread replies included), oldest first."""
        return [m for m in self.messages if m.channel == channel]

    def message(self, channel: str, ts: str) -> RecordedMessage | None:
        for m in self.messages:
            if m.channel == channel and m.ts == ts:
                return m
        return None

    def home_view(self, user_id: str) -> JsonDict | None:
        """The Home tab last published for ``user_id``."""
        view_id = self._home_view_ids.get(user_id)
        return self._open_views[view_id].view if view_id else None

    @staticmethod
    def dm_channel(user_id: str) -> str:
        """The id of the bot's direct message channel with ``user_id``."""
        return "D" + user_id

    # --- HTTP --------------------------------------------------------------------------------

    def response_url(self, name: str = "1") -> str:
        """A slash command's response_url that lands here (Slack's would be hooks.slack.com)."""
        return f"http://127.0.0.1:{self.port}/response/{name}"

    async def _respond(self, request: web.Request) -> web.StreamResponse:
        """A delayed answer to a slash command: JSON with text and blocks, checked like a post."""
        body: JsonDict = await request.json()
        problems = check_blocks(body.get("blocks") or [], 50)
        if problems:
            self.violations.append(Violation("response_url", "invalid_blocks", problems))
            return web.Response(status=400, text="invalid_blocks")
        self.responses.append(body)
        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        if self.delay:
            await asyncio.sleep(self.delay)
        arrived = time.monotonic()
        self.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        try:
            args = await self._read_args(request)
        except _ApiError as exc:
            self.calls.append((method, {}))
            self.arrivals.append(arrived)
            return self._error_response(method, exc)
        token = self._token(request, args)
        self.calls.append((method, args))
        self.arrivals.append(arrived)
        if token is None:
            return web.json_response({"ok": False, "error": "not_authed"})
        if token != self.token:
            return web.json_response({"ok": False, "error": "invalid_auth"})

        failure = self._failures[method].popleft() if self._failures[method] else None
        if failure is not None and not failure.drop:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return web.json_response(
                {"ok": False, "error": failure.error}, status=failure.status, headers=headers
            )

        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            result: JsonDict | web.Response = self._error_response(
                method, _ApiError("unknown_method", [f"{method} is not faked"], violation=True)
            )
        else:
            try:
                result = {"ok": True, **handler(args)}
            except _ApiError as exc:
                result = self._error_response(method, exc)

        if failure is not None and failure.drop:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()  # never reaches the client: the socket is gone
        if isinstance(result, web.Response):
            return result
        return web.json_response(result)

    def _error_response(self, method: str, exc: _ApiError) -> web.Response:
        if exc.violation:
            self.violations.append(Violation(method, exc.error, exc.messages))
        body: JsonDict = {"ok": False, "error": exc.error}
        if exc.messages:
            body["errors"] = exc.messages
            body["response_metadata"] = {"messages": exc.messages}
        return web.json_response(body)

    @staticmethod
    async def _read_args(request: web.Request) -> JsonDict:
        args: JsonDict = dict(request.query)
        if request.method != "POST" or not request.can_read_body:
            return args
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError as exc:
                raise _ApiError("invalid_json", [str(exc)], violation=True) from exc
            if not isinstance(body, dict):
                raise _ApiError("invalid_json", ["the body is not an object"], violation=True)
            args.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            raise _ApiError(
                "invalid_post_type", [f"unsupported {request.content_type}"], violation=True
            )
        return args

    @staticmethod
    def _token(request: web.Request, args: JsonDict) -> str | None:
        auth = request.headers.get("Authorization", "")
        token = args.pop("token", None)
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :].strip() or None
        return str(token) if token else None

    # --- Helpers for the methods -------------------------------------------------------------

    def _next_ts(self) -> str:
        self._ts_micros += TS_STEP_MICROS
        return f"{self._ts_micros // 1_000_000}.{self._ts_micros % 1_000_000:06d}"

    def _channel_id(self, channel: str) -> str:
        # Posting to a user id posts in the bot's DM with that user, as Slack does.
        if channel[:1] in ("U", "W"):
            return self.dm_channel(channel)
        return channel

    @staticmethod
    def _required(args: JsonDict, *names: str) -> None:
        for name in names:
            if args.get(name) in (None, ""):
                raise _missing(name)

    @staticmethod
    def _json_arg(args: JsonDict, name: str, error: str) -> Any:
        value = args.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise _ApiError(
                    error, [f"[ERROR] {name} is not valid JSON"], violation=True
                ) from exc
        return value

    def _message_content(
        self, args: JsonDict, *, text_required: bool = True
    ) -> tuple[str | None, list[JsonDict] | None]:
        text = args.get("text")
        text = None if text is None else str(text)
        blocks = self._json_arg(args, "blocks", "invalid_blocks_format")
        if blocks is not None and not isinstance(blocks, list):
            raise _ApiError("invalid_blocks_format", ["blocks must be an array"], violation=True)
        if text_required and not text and not blocks and not args.get("attachments"):
            raise _ApiError("no_text", ["[ERROR] text or blocks is required"], violation=True)
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            raise _ApiError(
                "msg_too_long",
                [f"[ERROR] text is {len(text)} characters, more than {MAX_MESSAGE_TEXT}"],
                violation=True,
            )
        if blocks is not None and self.check_later:
            self._unchecked.append(("blocks", {"blocks": blocks}))
        elif blocks is not None:
            errors = check_blocks(blocks, MAX_MESSAGE_BLOCKS, "/blocks")
            if errors:
                raise _ApiError("invalid_blocks", errors, violation=True)
        return text, blocks

    def _metadata(self, args: JsonDict) -> JsonDict | None:
        metadata = self._json_arg(args, "metadata", "invalid_metadata_format")
        if metadata is None:
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not metadata["event_type"]
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            raise _ApiError(
                "invalid_metadata_format",
                ["[ERROR] metadata needs a string event_type and an object event_payload"],
                violation=True,
            )
        return metadata

    def _message_json(self, m: RecordedMessage, *, with_metadata: bool) -> JsonDict:
        out: JsonDict = {
            "type": "message",
            "text": m.text or "",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": m.ts,
        }
        if m.blocks is not None:
            out["blocks"] = m.blocks
        if m.thread_ts is not None:
            out["thread_ts"] = m.thread_ts
        replies = [r for r in self.messages if r.channel == m.channel and r.thread_ts == m.ts]
        replies = [r for r in replies if r.is_reply]
        if replies:
            out["thread_ts"] = m.ts
            out["reply_count"] = len(replies)
            out["latest_reply"] = replies[-1].ts
        if m.reply_broadcast and m.is_reply:
            out["subtype"] = "thread_broadcast"
        if m.updates:
            out["edited"] = {"user": self.bot_user_id, "ts": m.ts}
        if with_metadata and m.metadata is not None:
            out["metadata"] = m.metadata
        return out

    def _check_view(self, args: JsonDict, *, kinds: tuple[str, ...]) -> JsonDict:
        view = self._json_arg(args, "view", "invalid_arguments")
        if not isinstance(view, dict):
            raise _invalid("[ERROR] view must be an object [json-pointer:/view]")
        if self.check_later:
            self._unchecked.append(("view", view))
            errors = []
        else:
            errors = check_view(view)
        if view.get("type") not in kinds:
            errors.insert(
                0, f"[ERROR] view type must be {' or '.join(kinds)} [json-pointer:/view/type]"
            )
        if errors:
            raise _invalid(*errors)
        return view

    def check_deferred(self) -> int:
        """Check what `check_later` set aside, each problem a violation; how many were checked."""
        checked = self._unchecked
        self._unchecked = []
        for kind, what in checked:
            if kind == "view":
                errors = check_view(what)
            else:
                errors = check_blocks(what["blocks"], MAX_MESSAGE_BLOCKS, "/blocks")
            if errors:
                self.violations.append(Violation(f"checked later: {kind}", "invalid", errors))
        return len(checked)

    def _trigger(self, args: JsonDict) -> str:
        self._required(args, "trigger_id")
        trigger = str(args["trigger_id"])
        if trigger in self._used_triggers:
            raise _ApiError(
                "exchanged_trigger_id",
                [f"[ERROR] trigger_id {trigger} was already used"],
                violation=True,
            )
        self._used_triggers.add(trigger)
        return trigger

    def _store_view(
        self,
        method: str,
        view: JsonDict,
        *,
        view_id: str | None = None,
        user_id: str | None = None,
        trigger_id: str | None = None,
    ) -> JsonDict:
        if view_id is None:
            self._view_seq += 1
            view_id = f"V{self._view_seq:08d}"
        external_id = view.get("external_id") or None
        if external_id is not None:
            for other in self._open_views.values():
                if other.external_id == external_id and other.id != view_id:
                    raise _ApiError("duplicate_external_id")
        digest = hashlib.sha1(json.dumps(view, sort_keys=True).encode()).hexdigest()[:8]
        view_hash = f"{1_700_000_000 + len(self.views)}.{digest}"
        stored: JsonDict = {
            "id": view_id,
            "team_id": self.team_id,
            "state": {"values": {}},
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
            **view,
            "hash": view_hash,
        }
        recorded = RecordedView(
            method=method,
            id=view_id,
            hash=view_hash,
            view=stored,
            user_id=user_id,
            trigger_id=trigger_id,
            external_id=external_id,
        )
        self.views.append(recorded)
        self._open_views[view_id] = recorded
        return {"view": stored}

    def _check_hash(self, args: JsonDict, current: RecordedView) -> None:
        expected = args.get("hash")
        if expected and expected != current.hash:
            raise _ApiError("hash_conflict")

    # --- Methods -------------------------------------------------------------------------------

    def _m_auth_test(self, args: JsonDict) -> JsonDict:
        return {
            "url": "https://test-partnership.slack.test/",
            "team": self.team,
            "user": "escalation-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _m_conversations_open(self, args: JsonDict) -> JsonDict:
        if args.get("channel"):
            return {"channel": {"id": str(args["channel"])}}
        users = args.get("users")
        if isinstance(users, list):
            users = ",".join(str(u) for u in users)
        if not users:
            raise _ApiError("users_list_not_supplied", violation=True)
        ids = [u.strip() for u in str(users).split(",") if u.strip()]
        if len(ids) == 1:
            channel = self.dm_channel(ids[0])
        else:
            channel = "G" + hashlib.sha1(",".join(sorted(ids)).encode()).hexdigest()[:10].upper()
        return {"no_op": False, "already_open": False, "channel": {"id": channel}}

    def _m_chat_postMessage(self, args: JsonDict) -> JsonDict:
        self._required(args, "channel")
        text, blocks = self._message_content(args)
        metadata = self._metadata(args)
        channel = self._channel_id(str(args["channel"]))
        thread_ts = args.get("thread_ts") or None
        message = RecordedMessage(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            thread_ts=str(thread_ts) if thread_ts else None,
            metadata=metadata,
            reply_broadcast=_truthy(args.get("reply_broadcast")),
            args=args,
        )
        self.messages.append(message)
        return {
            "channel": channel,
            "ts": message.ts,
            "message": self._message_json(message, with_metadata=True),
        }

    def _m_chat_update(self, args: JsonDict) -> JsonDict:
        self._required(args, "channel", "ts")
        text, blocks = self._message_content(args)
        metadata = self._metadata(args)
        channel = str(args["channel"])
        message = self.message(channel, str(args["ts"]))
        if message is None:
            raise _ApiError("message_not_found")
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if metadata is not None:
            message.metadata = metadata
        message.updates += 1
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text or "",
            "message": self._message_json(message, with_metadata=True),
        }

    def _m_chat_postEphemeral(self, args: JsonDict) -> JsonDict:
        self._required(args, "channel", "user")
        text, blocks = self._message_content(args)
        ephemeral = RecordedEphemeral(
            channel=self._channel_id(str(args["channel"])),
            user=str(args["user"]),
            message_ts=self._next_ts(),
            text=text,
            blocks=blocks,
            thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
        )
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.message_ts}

    def _m_conversations_history(self, args: JsonDict) -> JsonDict:
        self._required(args, "channel")
        channel = str(args["channel"])
        limit = int(args.get("limit") or 100)
        inclusive = _truthy(args.get("inclusive"))
        oldest = float(args["oldest"]) if args.get("oldest") else None
        latest = float(args["latest"]) if args.get("latest") else None
        found = []
        for m in reversed(self.messages):
            if m.channel != channel or (m.is_reply and not m.reply_broadcast):
                continue
            ts = float(m.ts)
            if oldest is not None and (ts < oldest or (ts == oldest and not inclusive)):
                continue
            if latest is not None and (ts > latest or (ts == latest and not inclusive)):
                continue
            found.append(m)
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "messages": [self._message_json(m, with_metadata=with_metadata) for m in found[:limit]],
            "has_more": len(found) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _m_conversations_replies(self, args: JsonDict) -> JsonDict:
        self._required(args, "channel", "ts")
        channel, ts = str(args["channel"]), str(args["ts"])
        parent = self.message(channel, ts)
        if parent is None:
            raise _ApiError("thread_not_found")
        root = parent.thread_ts or parent.ts
        thread = [
            m
            for m in self.messages
            if m.channel == channel and (m.ts == root or m.thread_ts == root)
        ]
        limit = int(args.get("limit") or 1000)
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "messages": [
                self._message_json(m, with_metadata=with_metadata) for m in thread[:limit]
            ],
            "has_more": len(thread) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _m_users_lookupByEmail(self, args: JsonDict) -> JsonDict:
        self._required(args, "email")
        email = str(args["email"]).strip().lower()
        for user in self.users.values():
            if user["profile"]["email"] and user["profile"]["email"].lower() == email:
                return {"user": user}
        raise _ApiError("users_not_found")

    def _m_users_info(self, args: JsonDict) -> JsonDict:
        self._required(args, "user")
        user = self.users.get(str(args["user"]))
        if user is None:
            raise _ApiError("user_not_found")
        return {"user": user}

    def _m_views_open(self, args: JsonDict) -> JsonDict:
        self._required(args, "view")
        view = self._check_view(args, kinds=("modal",))
        trigger = self._trigger(args)
        return self._store_view("views.open", view, trigger_id=trigger)

    def _m_views_push(self, args: JsonDict) -> JsonDict:
        self._required(args, "view")
        view = self._check_view(args, kinds=("modal",))
        trigger = self._trigger(args)
        return self._store_view("views.push", view, trigger_id=trigger)

    def _m_views_update(self, args: JsonDict) -> JsonDict:
        self._required(args, "view")
        if not args.get("view_id") and not args.get("external_id"):
            raise _invalid("[ERROR] view_id or external_id is required")
        view = self._check_view(args, kinds=("modal", "home"))
        current: RecordedView | None = None
        if args.get("view_id"):
            current = self._open_views.get(str(args["view_id"]))
        else:
            external_id = str(args["external_id"])
            current = next(
                (v for v in self._open_views.values() if v.external_id == external_id), None
            )
        if current is None:
            raise _ApiError("not_found")
        self._check_hash(args, current)
        return self._store_view("views.update", view, view_id=current.id, user_id=current.user_id)

    def _m_views_publish(self, args: JsonDict) -> JsonDict:
        self._required(args, "user_id", "view")
        view = self._check_view(args, kinds=("home",))
        user_id = str(args["user_id"])
        view_id = self._home_view_ids.get(user_id)
        if view_id is not None:
            self._check_hash(args, self._open_views[view_id])
        result = self._store_view("views.publish", view, view_id=view_id, user_id=user_id)
        self._home_view_ids[user_id] = result["view"]["id"]
        return result


# --- Block Kit checks ------------------------------------------------------------------------
# Slack's documented limits, checked on the JSON as sent; slack_sdk's models are run too.

PLAIN = ("plain_text",)
ANY_TEXT = ("plain_text", "mrkdwn")


def check_blocks(blocks: Any, max_blocks: int, where: str = "/blocks") -> list[str]:
    """Every reason Slack would reject this ``blocks`` list (empty when it is fine)."""
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(
            f"[ERROR] no more than {max_blocks} items allowed, got {len(blocks)} [json-pointer:{where}]"
        )
    walker = _Walker(errors)
    for i, block in enumerate(blocks):
        ptr = f"{where}/{i}"
        if not isinstance(block, dict):
            errors.append(f"[ERROR] a block must be an object [json-pointer:{ptr}]")
            continue
        errors.extend(_sdk_block_errors(block, ptr))
        walker.block(block, ptr)
    return errors


def check_view(view: JsonDict) -> list[str]:
    """Every reason Slack would reject this view (empty when it is fine)."""
    errors: list[str] = []
    try:
        model = View(**view)
        model.validate_json()
        model.to_dict()
    except Exception as exc:  # SlackObjectFormationError, or a TypeError on a malformed view
        errors.append(f"[ERROR] {exc} (slack_sdk View) [json-pointer:/view]")
    kind = view.get("type")
    text = _Walker(errors).text
    if kind == "modal":
        if view.get("title") is None:
            errors.append("[ERROR] missing required field: title [json-pointer:/view/title]")
        else:
            text(view["title"], "/view/title", 24, PLAIN)
    for key in ("submit", "close"):
        if view.get(key) is not None:
            if kind == "home":
                errors.append(f"[ERROR] a home view has no {key} [json-pointer:/view/{key}]")
            text(view[key], f"/view/{key}", 24, PLAIN)
    _max_len(errors, view.get("private_metadata"), 3000, "/view/private_metadata")
    _max_len(errors, view.get("callback_id"), 255, "/view/callback_id")
    _max_len(errors, view.get("external_id"), 255, "/view/external_id")
    blocks = view.get("blocks")
    if blocks is None:
        errors.append("[ERROR] missing required field: blocks [json-pointer:/view/blocks]")
    else:
        errors.extend(check_blocks(blocks, MAX_VIEW_BLOCKS, "/view/blocks"))
        if (
            kind == "modal"
            and isinstance(blocks, list)
            and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
            and view.get("submit") is None
        ):
            errors.append(
                "[ERROR] a modal with input blocks needs a submit button [json-pointer:/view/submit]"
            )
    return errors


def _sdk_block_errors(block: JsonDict, ptr: str) -> list[str]:
    try:
        parsed = Block.parse(block)
    except Exception as exc:
        return [f"[ERROR] {exc} (slack_sdk) [json-pointer:{ptr}]"]
    if parsed is None:
        return [f"[ERROR] unknown block type {block.get('type')!r} [json-pointer:{ptr}/type]"]
    try:
        parsed.validate_json()
        parsed.to_dict()  # validates the nested elements and text objects too
    except Exception as exc:
        return [f"[ERROR] {exc} (slack_sdk) [json-pointer:{ptr}]"]
    return []


def _max_len(errors: list[str], value: Any, limit: int, ptr: str, minimum: int = 0) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        errors.append(f"[ERROR] must be a string [json-pointer:{ptr}]")
    elif len(value) > limit:
        errors.append(f"[ERROR] must be at most {limit} characters [json-pointer:{ptr}]")
    elif len(value) < minimum:
        errors.append(f"[ERROR] must be at least {minimum} characters [json-pointer:{ptr}]")


class _Walker:
    """Slack's limits on blocks, elements and text objects, for one message or view."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.block_ids: set[str] = set()

    def text(
        self, obj: Any, ptr: str, limit: int, kinds: tuple[str, ...] = ANY_TEXT, minimum: int = 1
    ) -> None:
        if not isinstance(obj, dict):
            self.errors.append(f"[ERROR] must be a text object [json-pointer:{ptr}]")
            return
        if obj.get("type") not in kinds:
            self.errors.append(
                f"[ERROR] type must be {' or '.join(kinds)} [json-pointer:{ptr}/type]"
            )
        if obj.get("text") is None:
            self.errors.append(f"[ERROR] missing required field: text [json-pointer:{ptr}/text]")
        else:
            _max_len(self.errors, obj["text"], limit, f"{ptr}/text", minimum)

    def _items(self, value: Any, ptr: str, limit: int, minimum: int = 0) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.errors.append(f"[ERROR] must be an array [json-pointer:{ptr}]")
            return []
        if len(value) > limit:
            self.errors.append(
                f"[ERROR] no more than {limit} items allowed, got {len(value)} [json-pointer:{ptr}]"
            )
        if len(value) < minimum:
            self.errors.append(f"[ERROR] at least {minimum} items needed [json-pointer:{ptr}]")
        return value

    def block(self, block: JsonDict, ptr: str) -> None:
        block_id = block.get("block_id")
        if block_id is not None:
            _max_len(self.errors, block_id, 255, f"{ptr}/block_id", 1)
            if block_id in self.block_ids:
                self.errors.append(
                    f"[ERROR] block_id {block_id!r} is not unique [json-pointer:{ptr}/block_id]"
                )
            if isinstance(block_id, str):
                self.block_ids.add(block_id)
        action_ids: set[str] = set()  # Slack: an action_id is unique within its block
        kind = block.get("type")
        if kind == "section":
            if block.get("text") is None and block.get("fields") is None:
                self.errors.append(f"[ERROR] a section needs text or fields [json-pointer:{ptr}]")
            if block.get("text") is not None:
                self.text(block["text"], f"{ptr}/text", 3000)
            for i, f in enumerate(self._items(block.get("fields"), f"{ptr}/fields", 10)):
                self.text(f, f"{ptr}/fields/{i}", 2000)
            if block.get("accessory") is not None:
                self.element(block["accessory"], f"{ptr}/accessory", action_ids)
        elif kind == "header":
            self.text(block.get("text"), f"{ptr}/text", 150, PLAIN)
        elif kind == "actions":
            elements = self._items(block.get("elements"), f"{ptr}/elements", 25, 1)
            for i, el in enumerate(elements):
                self.element(el, f"{ptr}/elements/{i}", action_ids)
        elif kind == "context":
            elements = self._items(block.get("elements"), f"{ptr}/elements", 10, 1)
            for i, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") in ANY_TEXT:
                    self.text(el, f"{ptr}/elements/{i}", 3000)
        elif kind == "input":
            self.text(block.get("label"), f"{ptr}/label", 2000, PLAIN)
            if block.get("hint") is not None:
                self.text(block["hint"], f"{ptr}/hint", 2000, PLAIN)
            if block.get("element") is None:
                self.errors.append(
                    f"[ERROR] missing required field: element [json-pointer:{ptr}/element]"
                )
            else:
                self.element(block["element"], f"{ptr}/element", action_ids)

    def element(self, el: Any, ptr: str, action_ids: set[str]) -> None:
        if not isinstance(el, dict):
            self.errors.append(f"[ERROR] an element must be an object [json-pointer:{ptr}]")
            return
        action_id = el.get("action_id")
        if action_id is not None:
            _max_len(self.errors, action_id, 255, f"{ptr}/action_id", 1)
            if action_id in action_ids:
                self.errors.append(
                    f"[ERROR] action_id {action_id!r} is not unique in its block [json-pointer:{ptr}/action_id]"
                )
            if isinstance(action_id, str):
                action_ids.add(action_id)
        kind = el.get("type")
        if el.get("placeholder") is not None:
            self.text(el["placeholder"], f"{ptr}/placeholder", 150, PLAIN)
        if el.get("confirm") is not None:
            self.confirm(el["confirm"], f"{ptr}/confirm")
        if kind == "button":
            self.text(el.get("text"), f"{ptr}/text", 75, PLAIN)
            _max_len(self.errors, el.get("value"), 2000, f"{ptr}/value")
            _max_len(self.errors, el.get("url"), 3000, f"{ptr}/url")
            if el.get("style") not in (None, "primary", "danger"):
                self.errors.append(
                    f"[ERROR] style must be primary or danger [json-pointer:{ptr}/style]"
                )
        elif kind in ("static_select", "multi_static_select"):
            options, groups = el.get("options"), el.get("option_groups")
            if (options is None) == (groups is None):
                self.errors.append(
                    f"[ERROR] exactly one of options or option_groups is needed [json-pointer:{ptr}]"
                )
            self.options(options, f"{ptr}/options", 100, PLAIN)
            for i, group in enumerate(self._items(groups, f"{ptr}/option_groups", 100, 1)):
                g = f"{ptr}/option_groups/{i}"
                if not isinstance(group, dict):
                    self.errors.append(
                        f"[ERROR] an option group must be an object [json-pointer:{g}]"
                    )
                    continue
                self.text(group.get("label"), f"{g}/label", 75, PLAIN)
                self.options(group.get("options"), f"{g}/options", 100, PLAIN, required=True)
        elif kind == "overflow":
            self.options(el.get("options"), f"{ptr}/options", 5, PLAIN, required=True)
        elif kind in ("radio_buttons", "checkboxes"):
            self.options(el.get("options"), f"{ptr}/options", 10, ANY_TEXT, required=True)
        elif kind == "plain_text_input":
            max_length = el.get("max_length")
            if max_length is not None and not (
                isinstance(max_length, int) and 1 <= max_length <= 3000
            ):
                self.errors.append(
                    f"[ERROR] max_length must be 1 to 3000 [json-pointer:{ptr}/max_length]"
                )
            _max_len(self.errors, el.get("initial_value"), 3000, f"{ptr}/initial_value")

    def options(
        self, options: Any, ptr: str, limit: int, kinds: tuple[str, ...], *, required: bool = False
    ) -> None:
        if options is None and not required:
            return
        for i, option in enumerate(self._items(options, ptr, limit, 1)):
            o = f"{ptr}/{i}"
            if not isinstance(option, dict):
                self.errors.append(f"[ERROR] an option must be an object [json-pointer:{o}]")
                continue
            self.text(option.get("text"), f"{o}/text", 75, kinds)
            if option.get("value") is None:
                self.errors.append(
                    f"[ERROR] missing required field: value [json-pointer:{o}/value]"
                )
            _max_len(self.errors, option.get("value"), 150, f"{o}/value", 1)
            if option.get("description") is not None:
                self.text(option["description"], f"{o}/description", 75, kinds)

    def confirm(self, confirm: Any, ptr: str) -> None:
        if not isinstance(confirm, dict):
            self.errors.append(f"[ERROR] confirm must be an object [json-pointer:{ptr}]")
            return
        self.text(confirm.get("title"), f"{ptr}/title", 100, PLAIN)
        self.text(confirm.get("text"), f"{ptr}/text", 300)
        self.text(confirm.get("confirm"), f"{ptr}/confirm", 30, PLAIN)
        self.text(confirm.get("deny"), f"{ptr}/deny", 30, PLAIN)
