# SPDX-License-Identifier: Apache-2.0
"""Host header allow-list: requests for any other name get 400 before reaching the app."""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.web.errors import send_error

# One DNS label: letters, digits, hyphens, not starting or ending with a hyphen.
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_PORT = re.compile(r"^[0-9]{1,5}$")
# Answers kept per Host value: a deployment sees a handful of names, parsed once each.
_ANSWERS_KEPT = 256


def host_name(raw: str) -> str | None:
    """The lower-cased host of a Host header value without its port, or None when malformed."""
    value = raw.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
        if not _IPV6.fullmatch(host):
            return None
    else:
        host, _, port = value.partition(":")
        rest = f":{port}" if _ else ""
        if host.endswith("."):
            host = host[:-1]  # the absolute form names the same host
        if not _HOSTNAME.fullmatch(host):
            return None
    if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
        return None
    return host


class TrustedHosts:
    """Refuses requests whose Host header is not one of ``allowed_hosts`` (400, error shape).

    Entries are exact names (``api.example.org``, ``127.0.0.1``, ``[::1]``), or ``*.example.org``
    for any subdomain (never ``example.org`` itself, never a name that merely ends with the same
    characters), or ``*`` for any host (refused in production by the settings). Ports are ignored.
    This stops host-header injection into absolute URLs (redirects, reset links) and DNS rebinding.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], license_url: str | None = None) -> None:
        self.app = app
        self.license_url = license_url
        self.any_host = False
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        self._answers: dict[str, bool] = {}
        for entry in allowed_hosts:
            entry = entry.strip().lower()
            if entry == "*":
                self.any_host = True
            elif entry.startswith("*."):
                if host_name(entry[2:]) is None:
                    raise ValueError(f"invalid wildcard host entry: {entry!r}")
                self.suffixes.append(entry[1:])  # ".example.org"
            elif "*" in entry:
                raise ValueError(f"a wildcard may only be a leading '*.' label: {entry!r}")
            elif entry:
                name = host_name(entry)
                if name is None:
                    raise ValueError(f"invalid host entry: {entry!r}")
                self.exact.add(name)

    def allows(self, raw: str | None) -> bool:
        if raw is None:
            return False
        answer = self._answers.get(raw)
        if answer is None:
            if len(self._answers) >= _ANSWERS_KEPT:  # a client sending ever new names only churns it
                self._answers.clear()
            answer = self._answers[raw] = self._allows(raw)
        return answer

    def _allows(self, raw: str) -> bool:
        name = host_name(raw)
        if name is None:
            return False
        if self.any_host or name in self.exact:
            return True
        # host_name() guarantees well-formed labels, so the part before the suffix is a real label.
        return any(name.endswith(suffix) and len(name) > len(suffix) for suffix in self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        hosts = [value for name, value in scope.get("headers", ()) if name == b"host"]
        raw = hosts[0].decode("latin-1") if len(hosts) == 1 else None
        if self.allows(raw):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(
            scope, send, 400, code="invalid_host", message="Invalid Host header", license_url=self.license_url
        )
