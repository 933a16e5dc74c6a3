# SPDX-License-Identifier: Apache-2.0
"""Counts every HTTP request and times it to the last byte of its response (streams included)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.observability.metrics import UNMATCHED, NullMetrics


class RequestMetrics:
    """``bastion_requests_total`` and ``bastion_request_duration_seconds`` for each request.

    The route label is the matched route's template (``/api/sessions/{session_id}``), read from
    ``scope["route"]`` after the app has answered; a request no route matched (a 404, or one
    answered by the middleware before routing: a global 429, a bad key's 401) is ``unmatched``,
    so client-chosen paths never become series. Recorded when the app returns, which for a
    streamed reply is after its last chunk (or the client going away).
    """

    def __init__(self, app: ASGIApp, *, metrics: NullMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self.metrics.request(scope["method"], template, status, time.perf_counter() - started)
