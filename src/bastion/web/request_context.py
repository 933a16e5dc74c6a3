# SPDX-License-Identifier: Apache-2.0
"""Request id and access log: the outermost layer, so every log line of a request carries its id."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.audit.context import CURRENT, RequestFacts
from bastion.crypto.randomness import REQUEST_RANDOM
from bastion.observability.logging import DirectLines, bound_logger, direct_lines
from bastion.observability.metrics import UNMATCHED
from bastion.observability.redaction import REDACTED, Own, Redactor

REQUEST_ID_HEADER = "X-Request-ID"
_ID_HEADER = REQUEST_ID_HEADER.lower().encode()
# A client-sent id is kept for tracing only when it cannot smuggle anything into logs.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{8,64}$")
# Methods logged as they are; any other token a client sent is untrusted text.
_METHODS = {m: Own(m) for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_EVENT = Own("request")
_ACCESS = "bastion.access"
_DEBUG = 10
_INFO = 20
_ERROR = 40
_LEVEL_NAMES = {_INFO: "info", _ERROR: "error"}
# Rendered starts of access lines, by method, route template and status: a few hundred at most.
_HEADS_KEPT = 4096
_string = json.encoder.encode_basestring_ascii  # a JSON string, as the JSON renderer writes it


def new_request_id() -> str:
    return REQUEST_RANDOM.token_hex(16)


class RequestContext:
    """Assigns each request an id (``scope["state"]["request_id"]``, ``X-Request-ID``) and logs it.

    The access line has method, route template, path, redacted query, status, duration and client
    address; never bodies. Request headers are logged (redacted) only at DEBUG level.

    Only what a client chose is scanned for secrets, once, here: the query string, a path that is
    not its route's template, an unusual method, header names and values at DEBUG, a client-sent
    request id (kept only when the scan leaves it unchanged). Everything else on the line is
    Bastion's own (``Own``) and passes the log's redactor unscanned.
    """

    def __init__(
        self, app: ASGIApp, *, trust_client_id: bool = True, redactor: Redactor | None = None
    ) -> None:
        self.app = app
        self.trust_client_id = trust_client_id
        self.redactor = redactor or Redactor()
        self._heads: dict[tuple[str, str, int], str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._request_id(scope)
        # A fresh dict per request: servers may hand every request the lifespan's state mapping,
        # and per-request values written into it would leak between concurrent requests.
        scope["state"] = {**(scope.get("state") or {}), "request_id": request_id}
        status = 500
        started = time.perf_counter()
        id_header = (_ID_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        # Every line logged meanwhile carries the request id (the logging chain reads it here).
        facts = CURRENT.set(RequestFacts(scope, started))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            try:
                self._log(scope, status, time.perf_counter() - started, request_id)
            finally:
                CURRENT.reset(facts)

    def _request_id(self, scope: Scope) -> str:
        if self.trust_client_id:
            for name, value in scope.get("headers", ()):
                if name == b"x-request-id":
                    candidate: str = value.decode("latin-1")
                    # A client's own credential sent as its trace id is not logged either.
                    if _SAFE_ID.fullmatch(candidate) and self.redactor.text(candidate) == candidate:
                        return candidate
                    break
        return new_request_id()

    def _log(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        level = _INFO if status < 500 else _ERROR
        method = scope.get("method") or ""
        route = getattr(scope.get("route"), "path", None)
        path = scope.get("path") or ""
        query = scope.get("query_string", b"")
        if path == route and not query and method in _METHODS:
            # Nothing the client chose is on the line: rendered from its parts, unless it is not a
            # plain JSON line to Bastion's handler or DEBUG asks for the headers too.
            direct = direct_lines(_ACCESS)
            if direct is not None and direct.ready(level) and not direct.logger.isEnabledFor(_DEBUG):
                direct.put_later(
                    self._line,
                    direct,
                    (method, path, status),
                    elapsed,
                    self._client(scope),
                    request_id,
                    time.time(),
                )
                return
        log = bound_logger(_ACCESS)
        if not log.isEnabledFor(level):
            return
        debug = log.isEnabledFor(_DEBUG)
        text = self.redactor.text
        fields: dict[str, Any] = {
            "method": _METHODS.get(method) or Own(text(method)),
            "route": Own(route or UNMATCHED),
            "path": Own(path if path == route else text(path)),
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client": self._client(scope),
        }
        if query:
            fields["query"] = Own(text(query.decode("latin-1")))
        if debug:
            fields["headers"] = self._headers(scope)
        else:
            direct = direct_lines(_ACCESS)
            if direct is not None and direct.write(level, _LEVEL_NAMES[level], _EVENT, fields, request_id):
                return
        if level == _INFO:
            log.info(_EVENT, **fields)
        else:
            log.error(_EVENT, **fields)

    def _line(
        self,
        direct: DirectLines,
        key: tuple[str, str, int],
        elapsed: float,
        client: str | None,
        request_id: str,
        now: float,
    ) -> str:
        """The access line of a request whose path is its route's template, without a query: what
        the chain's JSON renderer writes for the same fields, in the same order."""
        method, route, status = key
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= _HEADS_KEPT:
                self._heads.clear()
            head = self._heads[key] = (
                f'{{"method": {_string(method)}, "route": {_string(route)}, "path": {_string(route)}, '
                f'"status": {status}, "duration_ms": '
            )
        level_name = _LEVEL_NAMES[_INFO if status < 500 else _ERROR]
        return (
            f"{head}{round(elapsed * 1000, 2)!r}, "
            f'"client": {"null" if client is None else _string(client)}, "event": "request", '
            f'"request_id": {_string(request_id)}, "logger": "bastion.access", "level": "{level_name}", '
            f'"timestamp": "{direct.timestamp(now)}"}}'
        )

    @staticmethod
    def _client(scope: Scope) -> Own | None:
        # ProxyHeaders' answer is a canonical address (parsed, never a header's raw text); without
        # it, the peer address the server itself read from the socket.
        resolved = (scope.get("state") or {}).get("client_ip")
        if isinstance(resolved, str):
            return Own(resolved)
        client = scope.get("client")
        return Own(client[0]) if client and client[0] else None

    def _headers(self, scope: Scope) -> dict[str, str]:
        redactor = self.redactor
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", ()):
            name = redactor.text(raw_name.decode("latin-1"))
            if redactor.is_sensitive(name):
                headers[name] = Own(REDACTED)
            else:
                headers[name] = Own(redactor.text(raw_value.decode("latin-1")))
        return headers
