# SPDX-License-Identifier: Apache-2.0
"""CORS from an explicit allow-list of origins, compared exactly."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.web.errors import send_error

DEFAULT_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
DEFAULT_HEADERS = ("Content-Type", "Authorization", "X-CSRF-Token")
# Headers a browser may send without asking (CORS-safelisted request headers).
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type"})
DEFAULT_EXPOSED = (
    "X-Request-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Content-Warning",  # the content guard's mark on a flagged reply, for browser chat clients
)
_CORS_HEADERS = frozenset(
    {
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-allow-methods",
        b"access-control-allow-headers",
        b"access-control-max-age",
        b"access-control-expose-headers",
    }
)


class CORS:
    """Cross-origin access for the origins in ``allowed_origins`` and nobody else.

    Written here rather than taken from Starlette's CORSMiddleware because that one reflects any
    requested header list and, with ``allow_origin_regex``, invites suffix/prefix mistakes; here an
    origin is allowed only when its serialized form equals a configured entry byte for byte
    (``https://app.example.org.evil.com``, ``null``, another scheme or port: all refused).

    - An allowed origin gets itself back in Access-Control-Allow-Origin with credentials allowed.
    - ``*`` (refused in production by the settings) lets any other origin read responses, never
      with credentials: the browser then sends no cookies or Authorization.
    - A refused origin gets no CORS headers at all; its preflight is answered 403 (error shape).
    - ``Vary: Origin`` goes on every response, since every response's CORS headers depend on Origin
      and a shared cache must not hand one origin's answer to another.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_origins: Iterable[str],
        allow_methods: Iterable[str] = DEFAULT_METHODS,
        allow_headers: Iterable[str] = DEFAULT_HEADERS,
        expose_headers: Iterable[str] = DEFAULT_EXPOSED,
        max_age: int = 3600,
        license_url: str | None = None,
    ) -> None:
        self.app = app
        self.license_url = license_url
        origins = [origin.strip() for origin in allowed_origins if origin.strip()]
        self.any_origin = "*" in origins
        self.origins = frozenset(origin.lower() for origin in origins if origin != "*")
        self.methods = tuple(dict.fromkeys(method.upper() for method in allow_methods))
        self.headers = tuple(dict.fromkeys(allow_headers))
        self.header_names = frozenset(h.lower() for h in self.headers) | _SAFELISTED
        self.preflight_headers = [
            (b"access-control-allow-methods", ", ".join(self.methods).encode()),
            (b"access-control-allow-headers", ", ".join(self.headers).encode()),
            (b"access-control-max-age", str(max_age).encode()),
        ]
        self.expose = ", ".join(expose_headers).encode()

    def _grant(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS response headers for this Origin value; empty when it is not allowed."""
        if origin is None:
            return []
        if origin in self.origins:
            return [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
            ]
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        return []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origins: list[bytes] = []
        request_method: bytes | None = None
        request_headers: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origins.append(value)
            elif name == b"access-control-request-method":
                request_method = value
            elif name == b"access-control-request-headers":
                request_headers.append(value)
        # Several Origin headers is not something a browser sends: treat it as no allowed origin.
        origin = origins[0].decode("latin-1") if len(origins) == 1 else None
        grant = self._grant(origin)
        if scope["method"] == "OPTIONS" and origins and request_method is not None:
            await self._preflight(scope, send, grant, request_method, request_headers)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() not in _CORS_HEADERS
                ]
                headers.extend(grant)
                if grant:
                    headers.append((b"access-control-expose-headers", self.expose))
                headers.append((b"vary", b"Origin"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(
        self,
        scope: Scope,
        send: Send,
        grant: list[tuple[bytes, bytes]],
        request_method: bytes,
        request_headers: list[bytes],
    ) -> None:
        vary = [(b"vary", b"Origin")]
        method = request_method.decode("latin-1").strip()
        asked = {
            part.strip().lower()
            for value in request_headers
            for part in value.decode("latin-1").split(",")
            if part.strip()
        }
        if not grant or method not in self.methods or not asked <= self.header_names:
            await send_error(
                scope,
                send,
                403,
                code="cors_rejected",
                message="Cross-origin request not allowed",
                license_url=self.license_url,
                headers=vary,
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [*grant, *self.preflight_headers, *vary],
            }
        )
        await send({"type": "http.response.body", "body": b""})
