"""Request body limits, enforced while the body streams in: a declared Content-Length over the
limit is answered 413 before a byte is read; a chunked body (no Content-Length) is counted as it
arrives and answered 413 as soon as it passes the limit. Either way the connection is closed
instead of reading the rest, so a client cannot make the node buffer more than the limit.
"""
from __future__ import annotations

import json
from typing import Callable

FORM_MAX_BYTES = 64 * 1024  # login form, worklist actions, JSON API: all a few hundred bytes


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware; limit_for(path) gives the limit in bytes and the config key behind it."""

    def __init__(self, app, limit_for: Callable[[str], tuple[int, str]]):
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, setting = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(send, limit, setting)
        received, started = 0, False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await _refuse(send, limit, setting)


async def _refuse(send, limit: int, setting: str) -> None:
    body = json.dumps({"error": f"request body over {limit} bytes ({setting})"}).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
