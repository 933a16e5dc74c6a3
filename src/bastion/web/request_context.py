# SPDX-License-Identifier: Apache-2.0
"""Request id and access log: the outermost layer, so every log line of a request carries its id."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.audit.context import CURRENT, RequestFacts
from bastion.observability.logging import get_logger

REQUEST_ID_HEADER = "X-Request-ID"
# A client-sent id is kept for tracing only when it cannot smuggle anything into logs.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._\-]{8,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContext:
    """Assigns each request an id (``scope["state"]["request_id"]``, ``X-Request-ID``) and logs it.

    The access line has method, path, redacted query, status, duration and client address; never
    bodies. Request headers are logged (redacted) only at DEBUG level.
    """

    def __init__(self, app: ASGIApp, *, trust_client_id: bool = True) -> None:
        self.app = app
        self.trust_client_id = trust_client_id
        self.log = get_logger("bastion.access")

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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        facts = CURRENT.set(RequestFacts(scope, started))
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                CURRENT.reset(facts)
                self._log(scope, status, time.perf_counter() - started)

    def _request_id(self, scope: Scope) -> str:
        if self.trust_client_id:
            for name, value in scope.get("headers", ()):
                if name == b"x-request-id":
                    candidate: str = value.decode("latin-1")
                    if _SAFE_ID.fullmatch(candidate):
                        return candidate
                    break
        return new_request_id()

    def _log(self, scope: Scope, status: int, elapsed: float) -> None:
        client = scope.get("client")
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "client": client[0] if client else None,
        }
        query = scope.get("query_string", b"")
        if query:
            fields["query"] = query.decode("latin-1")
        if self.log.isEnabledFor(10):  # DEBUG
            fields["headers"] = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())
            }
        level = "error" if status >= 500 else "info"
        getattr(self.log, level)("request", **fields)
