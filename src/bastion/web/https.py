# SPDX-License-Identifier: Apache-2.0
"""FORCE_HTTPS: plain-http requests are sent to the same URL over https with a 308."""

from __future__ import annotations

from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.web.errors import send_error
from bastion.web.hosts import host_name
from bastion.web.proxies import client_ip, is_loopback

# Probes that may stay on plain http: a container runtime or orchestrator checking its own
# instance over loopback (`bastion healthcheck`). Only from a loopback peer, only these reads.
LOOPBACK_PROBES = frozenset({("GET", "/health"), ("HEAD", "/health")})


class HTTPSRedirect:
    """Redirects every plain-http request to https with 308 (method and body are kept).

    The scheme is the one ``ProxyHeaders`` resolved, so a TLS-terminating trusted proxy is not
    redirected in a loop and an untrusted client cannot skip the redirect with X-Forwarded-Proto.
    The target host is the request's Host, which must already have passed ``TrustedHosts``:
    this layer never builds a URL from an unchecked name (no open redirect).

    GET /health from a loopback client (after trusted-proxy resolution, so a request forwarded by a
    local proxy counts as its real client) is answered instead: the probe of a container's own
    instance has no TLS to go to, and /health says nothing but "up".
    """

    def __init__(self, app: ASGIApp, *, enabled: bool = True, https_port: int = 443) -> None:
        self.app = app
        self.enabled = enabled
        self.port_suffix = "" if https_port == 443 else f":{https_port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or scope.get("scheme") != "http":
            await self.app(scope, receive, send)
            return
        if (scope.get("method"), scope.get("path")) in LOOPBACK_PROBES and is_loopback(client_ip(scope, ())):
            await self.app(scope, receive, send)
            return
        host = None
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = host_name(value.decode("latin-1"))
                break
        if host is None:
            # Only reachable without TrustedHosts in front; refuse rather than guess a host.
            await send_error(scope, send, 400, code="invalid_host", message="Invalid Host header")
            return
        raw_path = scope.get("raw_path") or quote(scope.get("path", "/")).encode()
        path = raw_path.decode("latin-1")
        if not path.startswith("/"):
            path = "/" + path
        query = scope.get("query_string", b"").decode("latin-1")
        location = f"https://{host}{self.port_suffix}{path}" + (f"?{query}" if query else "")
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [
                    (b"location", location.encode("latin-1")),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
