# SPDX-License-Identifier: Apache-2.0
"""Posting alerts to ALERT_WEBHOOK_URL from the background, never from the request that raised them.

``send`` only puts the alert on a bounded queue (a full queue drops it, counted and logged); one
task posts them in order. An attempt that meets a network error, a timeout, a 429 or a 5xx is
retried with exponential backoff and jitter, up to ALERT_WEBHOOK_MAX_ATTEMPTS; any other answer
ends the delivery (2xx delivered, other 4xx refused). The body is JSON; with ALERT_WEBHOOK_SECRET
set it is signed: ``X-Bastion-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` with the
timestamp in ``X-Bastion-Timestamp`` (seconds), so a receiver can check who sent it, and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bastion.observability.logging import get_logger
from bastion.observability.metrics import NullMetrics

SIGNATURE_HEADER = "X-Bastion-Signature"
TIMESTAMP_HEADER = "X-Bastion-Timestamp"
MAX_BACKOFF_SECONDS = 300.0
SHUTDOWN_GRACE_SECONDS = 5.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of ``X-Bastion-Signature`` for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookSender:
    """A bounded queue of alerts and the one task that posts them, retrying."""

    def __init__(
        self,
        *,
        url: str,
        client: httpx.AsyncClient,
        metrics: NullMetrics,
        secret: str | None = None,
        timeout: float = 5.0,
        max_attempts: int = 6,
        backoff: float = 1.0,
        queue_size: int = 1000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.client = client
        self.metrics = metrics
        self.secret = secret
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.clock = clock
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self.stats = {"delivered": 0, "retried": 0, "dropped": 0}
        self.log = get_logger("bastion.alerts.webhook")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bastion-alert-webhook")

    def send(self, alert: dict[str, Any]) -> None:
        """Queue ``alert`` for delivery; never waits."""
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._dropped("queue_full", alert)

    async def flush(self) -> None:
        """Wait until every queued alert has been delivered or dropped."""
        await self.queue.join()

    def _dropped(self, reason: str, alert: dict[str, Any]) -> None:
        self.stats["dropped"] += 1
        self.metrics.alert_webhook_dropped(reason)
        self.log.error(
            "alert_webhook_dropped", reason=reason, alert_id=alert.get("id"), kind=alert.get("kind")
        )

    async def _run(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self._deliver(alert)
            except asyncio.CancelledError:
                self._dropped("shutdown", alert)  # stopped mid-delivery, past the grace period
                raise
            except Exception as exc:  # keep the sender alive whatever one delivery did
                self.log.error("alert_webhook_failed", error=type(exc).__name__)
            finally:
                self.queue.task_done()

    def _delay(self, attempt: int) -> float:
        # Exponential, with "equal jitter": half fixed, half random, so retries from many
        # instances spread out yet each still waits longer than the last.
        ceiling: float = min(MAX_BACKOFF_SECONDS, self.backoff * 2.0 ** (attempt - 1))
        jitter: float = random.uniform(0, ceiling / 2)  # noqa: S311 - spreading retries, not a secret
        return ceiling / 2 + jitter

    def _request(self, alert: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(alert, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "bastion-alerts"}
        if self.secret is not None:
            timestamp = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = signature(self.secret, timestamp, body)
        return body, headers

    async def _deliver(self, alert: dict[str, Any]) -> None:
        for attempt in range(1, self.max_attempts + 1):
            body, headers = self._request(alert)  # signed afresh: the timestamp is the attempt's
            outcome: str
            try:
                response = await self.client.post(
                    self.url, content=body, headers=headers, timeout=self.timeout
                )
            except httpx.HTTPError as exc:  # connection refused, reset, timed out
                outcome = type(exc).__name__
            else:
                if response.is_success:
                    self.stats["delivered"] += 1
                    return
                if response.status_code < 500 and response.status_code != 429:
                    self.log.error(
                        "alert_webhook_refused", status=response.status_code, alert_id=alert.get("id")
                    )
                    self._dropped("refused", alert)
                    return
                outcome = str(response.status_code)
            if attempt == self.max_attempts:
                break
            self.stats["retried"] += 1
            delay = self._delay(attempt)
            self.log.warning(
                "alert_webhook_retry", attempt=attempt, outcome=outcome, retry_in=round(delay, 2)
            )
            await self.sleep(delay)
        self._dropped("gave_up", alert)

    async def aclose(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Give queued alerts ``grace`` seconds to go out, then stop; what is left is counted as dropped."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), grace)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        while not self.queue.empty():
            self._dropped("shutdown", self.queue.get_nowait())
