"""Fake chat platforms for the outbox tests: what each person was shown, by outbox key.

``FakePlatform`` implements the Platform protocol in memory. ``FakePlatformServer`` is the
same platform behind a tiny HTTP API on 127.0.0.1 (for tests whose bot runs in another
process), and ``HttpPlatform`` is the adapter such a process sends through.

Both behave like a real adapter that checks its history: a send marked ``maybe_sent`` whose
key the platform already has returns the earlier delivery and shows nothing; a send *not* so
marked is shown again, which is a duplicate a person saw (``duplicates()`` lists them).
A new thread root starts a thread (its id is the root's message id); a thread root sent with
a ``thread_id`` is an edit of that root, as Slack's ``chat.update``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import aiohttp

from bot.adapters.base import Delivered, SendFailed
from bot.messages import Message, Recipient


@dataclass(frozen=True)
class Shown:
    """One message as people saw it (a thread root edit is shown too, in place)."""

    key: str
    recipient: Recipient
    kind: str
    text: str
    thread_id: str | None  # the thread it went into (or, for a root edit, the root edited)
    message_id: str
    sender: str | None = None


@dataclass(frozen=True)
class Call:
    """One call to send, and how it ended: shown, deduplicated, or failed (with why)."""

    key: str
    maybe_sent: bool
    thread_id: str | None
    outcome: str
    sender: str | None = None


class Ledger:
    """The platform's history: thread-safe, shared by the in-memory and HTTP fakes."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.shown: list[Shown] = []
        self.calls: list[Call] = []
        self._first: dict[str, Delivered] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def deliver(
        self,
        *,
        key: str,
        recipient: Recipient,
        kind: str,
        text: str,
        thread_id: str | None,
        maybe_sent: bool,
        sender: str | None = None,
    ) -> Delivered:
        """Show a message, unless it may have been sent and was: then the earlier delivery."""
        with self._lock:
            earlier = self._first.get(key)
            if maybe_sent and earlier is not None:
                self.calls.append(Call(key, maybe_sent, thread_id, "deduplicated", sender))
                return earlier
            if kind == "thread_root" and thread_id:
                delivered = Delivered(thread_id, thread_id)  # an edit of the existing root
            else:
                message_id = f"{self.prefix}-{next(self._ids)}"
                delivered = Delivered(message_id, message_id if kind == "thread_root" else None)
            assert delivered.message_id is not None
            self._first.setdefault(key, delivered)
            self.shown.append(
                Shown(key, recipient, kind, text, thread_id, delivered.message_id, sender)
            )
            self.calls.append(Call(key, maybe_sent, thread_id, "shown", sender))
            return delivered

    def failed(self, key: str, maybe_sent: bool, thread_id: str | None, reason: str) -> None:
        """Record a send that failed."""
        with self._lock:
            self.calls.append(Call(key, maybe_sent, thread_id, f"failed: {reason}"))

    # ---- what tests look at ---------------------------------------------------------------

    def keys_shown(self) -> list[str]:
        """Every key shown, in order, repeats included."""
        return [s.key for s in self.shown]

    def duplicates(self) -> list[str]:
        """Keys a person was shown more than once."""
        return sorted(k for k, n in Counter(self.keys_shown()).items() if n > 1)

    def calls_for(self, key: str) -> list[Call]:
        """Every call to send this key."""
        return [c for c in self.calls if c.key == key]

    def to(self, person_id: str) -> list[Shown]:
        """What a person was shown directly."""
        return [
            s for s in self.shown if s.recipient.kind == "person" and s.recipient.id == person_id
        ]

    def in_channel(self, name: str = "disputes") -> list[Shown]:
        """What was posted in a partnership channel."""
        return [s for s in self.shown if s.recipient.kind == "channel" and s.recipient.id == name]


@dataclass
class Fault:
    """How the next matching sends fail."""

    times: int
    match: Callable[[Message], bool]
    reason: str
    retry_after: float | None = None
    permanent: bool = False
    arrived: bool = False  # the platform got the message before the failure (a lost answer)
    error: type[Exception] | None = None  # raise this instead of SendFailed (an adapter bug)


def _any(message: Message) -> bool:
    return True


class FakePlatform(Ledger):
    """An in-memory Platform; tell it how the next sends fail with the `*_next` methods."""

    def __init__(self, name: str = "fake", *, reach: Callable[[Message], bool] = _any) -> None:
        super().__init__(name)
        self.name = name
        self.reach = reach
        self.faults: list[Fault] = []

    def can_reach(self, message: Message) -> bool:
        """Whoever `reach` says (everyone by default)."""
        return self.reach(message)

    async def send(
        self, message: Message, *, thread_id: str | None, maybe_sent: bool = False
    ) -> Delivered:
        """Show the message, or fail as told."""
        fault = next((f for f in self.faults if f.times > 0 and f.match(message)), None)
        if fault is None:
            return self._deliver(message, thread_id, maybe_sent)
        fault.times -= 1
        if fault.arrived:
            self._deliver(message, thread_id, maybe_sent)
        self.failed(message.key, maybe_sent, thread_id, fault.reason)
        if fault.error is not None:
            raise fault.error(fault.reason)
        raise SendFailed(fault.reason, retry_after=fault.retry_after, permanent=fault.permanent)

    def _deliver(self, message: Message, thread_id: str | None, maybe_sent: bool) -> Delivered:
        return self.deliver(
            key=message.key,
            recipient=message.recipient,
            kind=message.kind,
            text=message.text,
            thread_id=thread_id,
            maybe_sent=maybe_sent,
        )

    def fail_next(
        self,
        times: int = 1,
        *,
        reason: str = "server error",
        match: Callable[[Message], bool] = _any,
        retry_after: float | None = None,
        permanent: bool = False,
        arrived: bool = False,
        error: type[Exception] | None = None,
    ) -> Fault:
        """The next `times` sends matching `match` fail (a transient error by default)."""
        fault = Fault(times, match, reason, retry_after, permanent, arrived, error)
        self.faults.append(fault)
        return fault

    def rate_limit_next(
        self, retry_after: float, times: int = 1, *, match: Callable[[Message], bool] = _any
    ) -> Fault:
        """The next sends answer 429 with this Retry-After (seconds)."""
        return self.fail_next(times, reason="rate limited", retry_after=retry_after, match=match)

    def time_out_next(
        self, times: int = 1, *, arrived: bool = False, match: Callable[[Message], bool] = _any
    ) -> Fault:
        """The next sends time out; with `arrived`, after the platform got the message."""
        return self.fail_next(times, reason="timed out", arrived=arrived, match=match)

    def fail_permanently_next(
        self, reason: str = "channel_not_found", *, match: Callable[[Message], bool] = _any
    ) -> Fault:
        """The next matching send fails in a way no retry will cure."""
        return self.fail_next(1, reason=reason, permanent=True, match=match)


# ---- the same platform over HTTP, for a bot in another process -------------------------------


class FakePlatformServer:
    """A fake platform API on 127.0.0.1 (a free port); use as a context manager.

    ``POST /send`` takes ``{key, recipient: {kind, id}, kind, text, thread_id, maybe_sent,
    sender}`` and answers ``{message_id, thread_id}``. ``hang_at(n)`` makes the n-th send from
    then on arrive (it is shown) and then get no answer until ``release()``: the moment to
    kill the sender. Leaving the ``with`` block releases any hung request and stops the server.
    """

    def __init__(self) -> None:
        self.ledger = Ledger("http")
        self.hung = threading.Event()
        self._release = threading.Event()
        self._hang_at: int | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def hang_at(self, n: int) -> None:
        """The n-th send from now arrives and then hangs until released."""
        with self._lock:
            self._count = 0
            self._hang_at = n
            self.hung.clear()
            self._release.clear()

    def release(self) -> None:
        """Let a hung request answer (to whoever is still listening)."""
        with self._lock:
            self._hang_at = None
        self._release.set()

    def _handle(self, body: dict[str, Any]) -> dict[str, Any]:
        recipient = body["recipient"]
        delivered = self.ledger.deliver(
            key=body["key"],
            recipient=Recipient(recipient["kind"], recipient["id"]),
            kind=body["kind"],
            text=body["text"],
            thread_id=body.get("thread_id"),
            maybe_sent=bool(body.get("maybe_sent")),
            sender=body.get("sender"),
        )
        with self._lock:
            self._count += 1
            hang = self._hang_at is not None and self._count == self._hang_at
        if hang:
            self.hung.set()
            # Bounded: the test kills the sender well within this, or the test fails anyway.
            self._release.wait(timeout=60)
        return {"message_id": delivered.message_id, "thread_id": delivered.thread_id}

    def __enter__(self) -> FakePlatformServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/send":
                    self.send_error(404)
                    return
                answer = json.dumps(fake._handle(body)).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender was killed while we hung: nobody to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


class HttpPlatform:
    """The Platform a bot process uses to reach a FakePlatformServer."""

    name = "fake"

    def __init__(self, base_url: str, *, sender: str) -> None:
        self.base_url = base_url
        self.sender = sender
        self._session: aiohttp.ClientSession | None = None

    def can_reach(self, message: Message) -> bool:
        """Everyone."""
        return True

    async def send(
        self, message: Message, *, thread_id: str | None, maybe_sent: bool = False
    ) -> Delivered:
        """POST the message; an unreachable or failing server is a SendFailed."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        body = {
            "key": message.key,
            "recipient": {"kind": message.recipient.kind, "id": message.recipient.id},
            "kind": message.kind,
            "text": message.text,
            "thread_id": thread_id,
            "maybe_sent": maybe_sent,
            "sender": self.sender,
        }
        try:
            async with self._session.post(f"{self.base_url}/send", json=body) as response:
                if response.status == 429:
                    retry = response.headers.get("Retry-After")
                    raise SendFailed("rate limited", retry_after=float(retry) if retry else None)
                if response.status != 200:
                    raise SendFailed(f"HTTP {response.status}")
                data = await response.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendFailed("timed out") from exc
        return Delivered(data.get("message_id"), data.get("thread_id"))

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
