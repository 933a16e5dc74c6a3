# SPDX-License-Identifier: Apache-2.0
"""Counts every HTTP request and times it to the last byte of its response (streams included)."""

from __future__ import annotations

import time
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.audit.access import AccessLog
from bastion.observability.metrics import UNMATCHED, NullMetrics
from bastion.ratelimit.audit import ViolationAudit


class RequestObserver(Protocol):
    """What watches finished requests for anomalies (``bastion.alerts.AnomalyDetector``)."""

    async def observe_request(
        self, *, status: int, route: str, ip: str | None, user_id: str | None, api_key_id: str | None
    ) -> None: ...


class RequestMetrics:
    """``bastion_requests_total`` and ``bastion_request_duration_seconds`` for each request.

    The route label is the matched route's template (``/api/sessions/{session_id}``), read from
    ``scope["route"]`` after the app has answered; a request no route matched (a 404, or one
    answered by the middleware before routing: a global 429, a bad key's 401) is ``unmatched``,
    so client-chosen paths never become series. The same facts, with who asked, become the
    request's access record (``AccessLog``). Recorded when the app returns, which for a
    streamed reply is after its last chunk (or the client going away).

    Each finished request is also shown to ``observer`` (the anomaly detector), with the client
    address, account and API key the layers further in resolved (a refused key's id too).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: NullMetrics,
        access_log: AccessLog | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.observer = observer
        self.violations = ViolationAudit()

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
            elapsed = time.perf_counter() - started
            self.metrics.request(scope["method"], template, status, elapsed)
            if self.access_log is not None:
                self.access_log.note(scope["method"], template, status, elapsed, scope.get("state") or {})
            if status == 429:
                await self.violations.seen(scope)
            if self.observer is not None:
                await self._observe(self.observer, scope, status, template)

    @staticmethod
    async def _observe(observer: RequestObserver, scope: Scope, status: int, route: str) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        ip = state.get("client_ip")
        api_key_id = getattr(principal, "api_key_id", None) or state.get("rejected_api_key_id")
        await observer.observe_request(
            status=status,
            route=route,
            ip=ip if isinstance(ip, str) else None,
            user_id=getattr(principal, "user_id", None),
            api_key_id=api_key_id if isinstance(api_key_id, str) else None,
        )
