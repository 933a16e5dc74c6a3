# SPDX-License-Identifier: Apache-2.0
"""Caps on the number and total size of request headers."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.web.errors import send_error


class HeaderLimits:
    """Refuses requests with more than ``max_count`` headers or more than ``max_bytes`` of header
    names and values together (431, error shape), before any later layer parses them.

    The server in front has its own, looser, limits; this one gives the clear error shape and the
    same ceiling whichever server or proxy Bastion runs behind.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_count: int = 100,
        max_bytes: int = 32 * 1024,
        license_url: str | None = None,
    ) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.license_url = license_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        too_many = len(headers) > self.max_count
        if too_many or sum(len(name) + len(value) for name, value in headers) > self.max_bytes:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1009})
                return
            await send_error(
                scope,
                send,
                431,
                code="headers_too_large",
                message="Too many request headers" if too_many else "The request headers are too large",
                license_url=self.license_url,
            )
            return
        await self.app(scope, receive, send)
