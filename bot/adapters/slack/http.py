"""POST /slack/events: Bolt behind a guard, so a malformed body is a 400 and never a 500.

Bolt parses the body before it checks the signature, and its own middleware and matchers index
into the payload (`body["view"]["type"]`, `body["actions"][0]`): a body that is not UTF-8,
not JSON where JSON is due, or missing those fields raised out of Bolt as an HTTP 500. Our
listeners never raise (each runs under the `Budget`), so a 500 from Bolt can only mean a payload
it could not read. May import aiohttp and Bolt.
"""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

log = logging.getLogger(__name__)


def bad_request() -> web.Response:
    """A short plain answer: nothing about the server's insides."""
    return web.Response(status=400, text="Bad request", content_type="text/plain")


async def handle_slack_request(app: AsyncApp, request: web.Request) -> web.Response:
    """Dispatch one Slack request to Bolt; 400 for a body Bolt cannot read."""
    raw = await request.read()
    try:
        bolt_request = AsyncBoltRequest(
            body=raw.decode("utf-8"),
            query=request.query_string,
            headers=request.headers,  # type: ignore[arg-type]
        )
    except Exception:  # Bolt's parsing of untrusted bytes: JSON, UTF-8 and shape errors alike
        log.info("Slack request with an unreadable body refused", extra={"status": 400})
        return bad_request()
    if not isinstance(bolt_request.body, dict):
        return bad_request()
    response = await app.async_dispatch(bolt_request)
    if response.status >= 500:
        # Bolt has already logged what it tripped over; Slack (or whoever sent it) gets a 400.
        return bad_request()
    return await to_aiohttp_response(response)
