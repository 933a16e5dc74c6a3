# SPDX-License-Identifier: Apache-2.0
"""The anomaly detector: one per app (``app.state.anomaly``), fed by audit records, requests and usage.

Feeding it never fails and never holds the caller up noticeably: each observation is at most one
call to the shared counters (Redis with the limiter's fail-fast timeout, in process without
Redis or while it is unreachable), and what needs more I/O (storing the alert, the audit record,
the webhook, the administrators' networks) is queued for a background task; a full queue drops
the work, counted and logged. Any error is logged and counted (``stats``), never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.addresses import counted_as
from bastion.alerts.counters import Counters, RedisAlertStore, Usage
from bastion.alerts.networks import AdminNetworks
from bastion.alerts.rules import AlertKind, Rule, Rules, TokenRule
from bastion.alerts.service import AlertService, Raised
from bastion.alerts.signals import Signal, SignalKind, is_extraction, kind_of
from bastion.alerts.webhook import webhook_courier
from bastion.db.types import utcnow
from bastion.observability.delivery import Courier
from bastion.observability.logging import get_logger
from bastion.observability.metrics import NullMetrics
from bastion.ratelimit.storage.base import Rider
from bastion.redis_client import RedisClient
from bastion.settings import Settings

Job = Callable[[], Awaitable[None]]
SHUTDOWN_GRACE_SECONDS = 5.0
ALL = "all"


class AnomalyDetector:
    """Counts what the issue's detectors watch and raises an alert when a count goes above its rule.

    Built by ``create_app``; ``start`` (in the lifespan) connects it to Redis, the database and
    the webhook. Before ``start`` and after ``aclose`` observations are counted in process and
    crossings are only logged.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: NullMetrics,
        clock: Callable[[], float] = time.time,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.rules = Rules.from_settings(settings)
        self.ipv6_prefix = settings.rate_limit_ipv6_prefix
        self.metrics = metrics
        self.clock = clock
        self.wall_clock = wall_clock
        self.counters = Counters(None)
        self.alerts: AlertService | None = None
        self.networks: AdminNetworks | None = None
        self.webhook: Courier | None = None
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.alert_queue_size)
        self.stats = {"errors": 0, "dropped": 0}
        self.log = get_logger("bastion.alerts")
        self._worker: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(
        self,
        *,
        redis: RedisClient | None,
        sessionmaker: async_sessionmaker[AsyncSession],
        http_client: httpx.AsyncClient,
    ) -> None:
        settings = self.settings
        self.counters = Counters(redis)
        url = settings.secret("ALERT_WEBHOOK_URL")
        if url is not None:
            self.webhook = webhook_courier(
                url=url,
                client=http_client,
                metrics=self.metrics,
                secret=settings.secret("ALERT_WEBHOOK_SECRET"),
                timeout=settings.alert_webhook_timeout_seconds,
                max_attempts=settings.alert_webhook_max_attempts,
                backoff=settings.alert_webhook_backoff_seconds,
                queue_size=settings.alert_webhook_queue_size,
            )
        self.alerts = AlertService(
            sessionmaker=sessionmaker, metrics=self.metrics, webhook=self.webhook, clock=self.wall_clock
        )
        self.networks = AdminNetworks(sessionmaker=sessionmaker, clock=self.wall_clock)
        self.queue = asyncio.Queue(maxsize=settings.alert_queue_size)
        self._worker = asyncio.create_task(self._work(), name="bastion-alerts")

    async def drain(self) -> None:
        """Wait until every queued alert has been stored and handed to the webhook sender."""
        await self.queue.join()

    async def aclose(self) -> None:
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), SHUTDOWN_GRACE_SECONDS)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self.webhook is not None:
            await self.webhook.aclose()
            self.webhook = None
        self.alerts = None
        self.networks = None

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await job()
            except Exception as exc:  # one failed alert must not stop the next
                self._failed("background", exc)
            finally:
                self.queue.task_done()

    def _enqueue(self, job: Job, **about: Any) -> None:
        if self._worker is None:
            self.log.warning("alert_not_started", **about)
            return
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats["dropped"] += 1
            self.log.error("alert_dropped", reason="queue_full", dropped=self.stats["dropped"], **about)

    def _failed(self, where: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        self.log.warning("anomaly_detection_failed", where=where, error=type(exc).__name__)

    # -- counting ----------------------------------------------------------------------------

    async def _count(self, kind: AlertKind, rule: Rule, subject: str, **details: Any) -> None:
        if not rule.enabled:
            return
        count = await self.counters.count(f"{kind}:{subject}", self.clock(), rule.window)
        # Exactly one event makes the count threshold + 1: that one raises the alert, once per window.
        if count == rule.threshold + 1:
            self._raise(Raised(kind, subject, count, rule.threshold, rule.window, details))

    def _raise(self, raised: Raised) -> None:
        alerts = self.alerts

        async def job() -> None:
            if alerts is not None:
                await alerts.raise_alert(raised)

        self._enqueue(job, kind=str(raised.kind), subject=raised.subject)

    def _ip(self, ip: str) -> str:
        return f"ip:{counted_as(ip, self.ipv6_prefix)}"

    # -- the three feeds ---------------------------------------------------------------------

    async def observe_event(self, signal: Signal) -> None:
        """One audit record (failed and successful sign-ins, guard verdicts, sessions created)."""
        try:
            await self._observe_event(signal)
        except Exception as exc:
            self._failed("event", exc)

    async def _observe_event(self, signal: Signal) -> None:
        kind = kind_of(signal)
        rules = self.rules
        if kind is SignalKind.AUTH_FAILURE:
            if signal.ip:
                await self._count(AlertKind.AUTH_FAILURES_IP, rules.auth_failures, self._ip(signal.ip))
            if signal.user_id:
                await self._count(
                    AlertKind.AUTH_FAILURES_ACCOUNT, rules.auth_failures, f"user:{signal.user_id}"
                )
        elif kind is SignalKind.GUARD_VERDICT and is_extraction(signal):
            subject = self._caller(signal.api_key_id, signal.user_id, signal.ip)
            if subject is not None:
                await self._count(AlertKind.PROMPT_EXTRACTION, rules.prompt_extraction, subject)
        elif kind is SignalKind.SESSION_CREATED:
            await self._count(AlertKind.SESSION_SPIKE, rules.session_creations, ALL)
        elif kind is SignalKind.AUTH_SUCCESS and rules.admin_new_network:
            self._signed_in(signal)
        # SignalKind.RATE_LIMITED: every 429 is counted from the request path (observe_request),
        # which sees all of them, whichever layer refused; counting the event too would count twice.

    def _caller(self, api_key_id: str | None, user_id: str | None, ip: str | None) -> str | None:
        if api_key_id:
            return f"key:{api_key_id}"
        if user_id:
            return f"user:{user_id}"
        return self._ip(ip) if ip else None

    def _signed_in(self, signal: Signal) -> None:
        # Role None: the feed does not know it, and the background job reads it from the account.
        if signal.result != "success" or signal.role not in (None, "admin"):
            return
        if signal.user_id and signal.ip:
            self._admin_sign_in(signal.user_id, signal.ip, signal.role)

    def _admin_sign_in(self, user_id: str, ip: str, role: str | None) -> None:
        networks = self.networks

        async def job() -> None:
            if networks is None:
                return
            network = await networks.is_new(user_id, ip, role)
            if network is not None and self.alerts is not None:
                raised = Raised(AlertKind.ADMIN_NEW_NETWORK, f"user:{user_id}", 1, 0, 0, {"network": network})
                await self.alerts.raise_alert(raised)

        self._enqueue(job, kind=str(AlertKind.ADMIN_NEW_NETWORK))

    async def observe_request(
        self, *, status: int, route: str, ip: str | None, user_id: str | None, api_key_id: str | None
    ) -> None:
        """One finished HTTP request: server errors, 429s per address, 401s and 429s per key."""
        if status < 500 and status not in (401, 429):
            return  # the common case costs nothing
        try:
            rules = self.rules
            if status >= 500:
                await self._count(AlertKind.SERVER_ERRORS, rules.server_errors, ALL, route=route)
                return
            if status == 429 and ip:
                await self._count(AlertKind.RATE_LIMIT_IP, rules.rate_limit, self._ip(ip))
            if api_key_id:
                await self._count(AlertKind.KEY_REFUSALS, rules.key_refusals, f"key:{api_key_id}")
        except Exception as exc:
            self._failed("request", exc)

    def token_rider(self, *, api_key_id: str | None, user_id: str | None, tokens: int) -> Rider | None:
        """``observe_tokens`` as a script to send with the budget's settlement (one round trip for
        both), or None when it cannot ride (counters not in Redis now): then call ``observe_tokens``."""
        rule = self.rules.tokens
        subject = self._caller(api_key_id, user_id, None)
        if tokens <= 0 or not rule.enabled or subject is None:
            return None
        call = self.counters.usage_call(subject, self.clock(), tokens, rule)
        if call is None:
            return None

        def done(reply: Any) -> None:
            if isinstance(reply, Exception):
                self._failed("tokens", reply)
                return
            self._tokens_counted(subject, rule, RedisAlertStore.usage_of(reply))

        return Rider(call, done)

    def _tokens_counted(self, subject: str, rule: TokenRule, usage: Usage) -> None:
        if usage.fire:
            threshold = int(rule.factor * usage.baseline)
            details = {"baseline": round(usage.baseline, 1), "factor": rule.factor, "hours": usage.hours}
            self._raise(Raised(AlertKind.TOKEN_USAGE, subject, usage.used, threshold, 3600, details))

    async def observe_tokens(self, *, api_key_id: str | None, user_id: str | None, tokens: int) -> None:
        """Model tokens a key (or, without a key, an account) just spent."""
        rule = self.rules.tokens
        subject = self._caller(api_key_id, user_id, None)
        if tokens > 0 and rule.enabled and subject is not None:
            await self._count_tokens(subject, self.clock(), tokens, rule)

    def count_tokens(self, *, api_key_id: str | None, user_id: str | None, tokens: int) -> None:
        """``observe_tokens`` off the caller's path: counted by the background worker (in order,
        under the hour they were spent in), so a reply does not wait on the count's round trip."""
        rule = self.rules.tokens
        subject = self._caller(api_key_id, user_id, None)
        if tokens <= 0 or not rule.enabled or subject is None:
            return
        now = self.clock()

        async def job() -> None:
            await self._count_tokens(subject, now, tokens, rule)

        self._enqueue(job, kind=str(AlertKind.TOKEN_USAGE), subject=subject)

    async def _count_tokens(self, subject: str, now: float, tokens: int, rule: TokenRule) -> None:
        try:
            usage = await self.counters.usage(subject, now, tokens, rule)
        except Exception as exc:
            self._failed("tokens", exc)
            return
        self._tokens_counted(subject, rule, usage)
