# SPDX-License-Identifier: Apache-2.0
"""Request body limits enforced while the body streams in, and a deadline for slow bodies."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.web.errors import send_error

MIB = 1024 * 1024
_DISCONNECT: Message = {"type": "http.disconnect"}
_TEMPLATE_PARAM = re.compile(r"\{[^/{}]+\}")


def route_pattern(template: str) -> re.Pattern[str]:
    """``/api/sessions/{id}/voice-chat`` -> a regex matching one path segment per parameter."""
    parts = _TEMPLATE_PARAM.split(template)
    regex = "[^/]+".join(re.escape(part) for part in parts)
    return re.compile(rf"^{regex}/?$")


def is_json_type(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    mime = content_type.split(b";", 1)[0].strip().lower()
    return mime == b"application/json" or mime.endswith(b"+json")


class BodyLimit:
    """Caps request bodies by counting the bytes actually received, not by trusting Content-Length.

    - ``max_body_bytes`` applies everywhere unless ``route_limits`` (path template -> bytes, e.g.
      ``{"/api/sessions/{id}/voice-chat": 10 * MIB}``) names the path; ``json_max_bytes`` then caps
      JSON bodies on any route, so a large upload route does not accept a 10 MiB JSON document.
    - A Content-Length above the cap is refused before a byte of the body is read (413). A body
      that turns out larger than announced, or a chunked body with no length, is cut off at the cap
      (413). Malformed or conflicting Content-Length headers get 400.
    - The whole body must arrive within ``timeout_seconds`` of the first read: a client trickling a
      byte at a time to hold a worker gets 408. ``clock`` is injectable so tests move time.

    Once this layer has answered, the app sees the client as disconnected and anything it still
    tries to send is dropped.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = MIB,
        route_limits: Mapping[str, int] | None = None,
        json_max_bytes: int | None = None,
        timeout_seconds: float | None = 30.0,
        clock: Callable[[], float] = time.monotonic,
        license_url: str | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.routes = [(route_pattern(path), limit) for path, limit in (route_limits or {}).items()]
        self.json_max_bytes = json_max_bytes
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.license_url = license_url

    def limit_for(self, path: str, content_type: bytes | None) -> int:
        limit = next((lim for pattern, lim in self.routes if pattern.match(path)), self.max_body_bytes)
        if self.json_max_bytes is not None and is_json_type(content_type):
            limit = min(limit, self.json_max_bytes)
        return limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lengths: list[bytes] = []
        content_type: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                lengths.append(value)
            elif name == b"content-type":
                content_type = value
        limit = self.limit_for(scope.get("path", ""), content_type)
        if lengths:
            declared = {value.strip() for value in lengths}
            value = next(iter(declared))
            if len(declared) != 1 or not value.isdigit() or len(value) > 18:
                await send_error(
                    scope,
                    send,
                    400,
                    code="invalid_content_length",
                    message="The Content-Length header is invalid",
                    license_url=self.license_url,
                )
                return
            if int(value) > limit:
                await self._too_large(scope, send, limit)
                return

        received = 0
        body_done = False
        answered = False  # this layer sent its own response
        started = False  # the app started its response
        deadline = None if self.timeout_seconds is None else self.clock() + self.timeout_seconds

        async def reject(status: int) -> Message:
            nonlocal answered
            if not started and not answered:
                answered = True
                if status == 413:
                    await self._too_large(scope, send, limit)
                else:
                    await send_error(
                        scope,
                        send,
                        408,
                        code="request_timeout",
                        message="The request body was not received in time",
                        license_url=self.license_url,
                    )
            return _DISCONNECT

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if answered:
                return _DISCONNECT
            if body_done or deadline is None:
                message = await receive()
            else:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return await reject(408)
                try:
                    # asyncio.timeout, not wait_for: no extra task per body chunk.
                    async with asyncio.timeout(remaining):
                        message = await receive()
                except TimeoutError:
                    return await reject(408)
            if message["type"] == "http.request" and not body_done:
                received += len(message.get("body", b""))
                if received > limit:
                    return await reject(413)
                if not message.get("more_body", False):
                    body_done = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # The app failed only because this layer cut its body off after answering; anything
            # else is not ours to swallow.
            if not answered:
                raise

    async def _too_large(self, scope: Scope, send: Send, limit: int) -> None:
        await send_error(
            scope,
            send,
            413,
            code="payload_too_large",
            message=f"The request body is larger than {limit} bytes",
            license_url=self.license_url,
            # The rest of the body is never read, so the connection cannot be reused.
            headers=[(b"connection", b"close")],
        )
