# SPDX-License-Identifier: Apache-2.0
"""Resolve the real client address and scheme, believing X-Forwarded-* only from trusted proxies."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.addresses import canonical_address
from bastion.web.proxies import client_ip, is_trusted, parse_networks

_SCHEMES = {"http": "http", "https": "https"}
_WEBSOCKET_SCHEMES = {"http": "ws", "https": "wss"}


class ProxyHeaders:
    """Rewrites ``scope["client"]`` and ``scope["scheme"]`` to what the client really used.

    When the TCP peer is one of ``trusted_proxies``, the client is the rightmost X-Forwarded-For hop
    that is not itself a trusted proxy and the scheme is the rightmost X-Forwarded-Proto value (the
    one our own proxy wrote). From any other peer both headers are ignored: a client cannot claim
    another address (to dodge rate limits) or claim https (to get HSTS or skip the redirect).

    Later layers read the resolved values where Starlette puts them: ``scope["client"]`` (so
    ``request.client.host``) and ``scope["scheme"]``. The original peer stays available as
    ``scope["state"]["peer"]`` and the resolved address as ``scope["state"]["client_ip"]``.
    The scope is updated in place so the outer access log records the resolved client too.
    Addresses are canonical from here on: a dual-stack listener's IPv4-mapped peer
    (``::ffff:203.0.113.7``) becomes ``203.0.113.7``, so limits, blocks, audit and logs all see
    the one form a block or a limit on that IPv4 address names.
    A peer on a unix socket (``bastion serve --uds``) is recorded as ``127.0.0.1``.
    """

    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str] = ()) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        peer = scope.get("client")
        server = scope.get("server")
        if peer is None and server is not None and server[1] is None:
            # A unix-socket peer has no address but is a process on this machine (a local nginx):
            # it counts as loopback, so TRUSTED_PROXIES=127.0.0.1 trusts it like a loopback proxy.
            peer = ("127.0.0.1", 0)
            scope["client"] = peer
        elif peer is not None and peer[0]:
            canonical = canonical_address(peer[0])
            if canonical != peer[0]:
                peer = (canonical, peer[1])
                scope["client"] = peer
        state["peer"] = peer
        peer_host: str | None = peer[0] if peer else None
        if self.trusted and is_trusted(peer_host, self.trusted):
            resolved = client_ip(scope, self.trusted)
            if resolved is not None and resolved != peer_host:
                # The port of the original client is unknown behind a proxy.
                scope["client"] = (resolved, 0)
            scheme = self._forwarded_scheme(scope)
            if scheme is not None:
                table = _WEBSOCKET_SCHEMES if scope["type"] == "websocket" else _SCHEMES
                scope["scheme"] = table[scheme]
            peer_host = resolved
        state["client_ip"] = peer_host
        await self.app(scope, receive, send)

    @staticmethod
    def _forwarded_scheme(scope: Scope) -> str | None:
        value: str | None = None
        for name, raw in scope.get("headers", ()):
            if name == b"x-forwarded-proto":
                value = raw.decode("latin-1")
        if value is None:
            return None
        # Several proxies may each append; the last hop is the one in front of us.
        candidate = value.split(",")[-1].strip().lower()
        return candidate if candidate in _SCHEMES else None
