# SPDX-License-Identifier: Apache-2.0
"""Delivering JSON documents to a remote HTTP endpoint without ever holding up a request.

One mechanism for every background delivery: the audit log's collector sink (batches) and
ALERT_WEBHOOK_URL (one alert a post, signed). A ``Courier`` takes documents with ``offer``
(synchronous, constant time, never waits) into a bounded buffer; one background task posts them
in order, ``batch_size`` at a time (wrapped as ``{envelope: [...]}``, or the document itself
when a batch is one document and there is no envelope). A network error, a timeout, a 408/425/
429 or a 5xx is retried with exponential backoff and equal jitter (half the delay fixed, half
random: retries from many instances spread out, and each still waits longer than the last), up
to ``max_attempts``; any other answer ends the attempt (2xx delivered, other 4xx refused).

What cannot be kept is dropped, counted in ``bastion_delivery_dropped_total{kind, reason}`` and
logged, never silently: ``queue_full`` (the buffer is full), ``gave_up`` (every attempt failed),
``refused`` (the receiver said no), ``shutdown`` (still waiting when ``aclose``'s grace ended).
The backlog is ``bastion_delivery_backlog{kind}``. ``sign`` computes headers from the exact body
bytes of each attempt (a webhook's HMAC over a fresh timestamp).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bastion.observability.logging import get_logger
from bastion.observability.metrics import NULL_METRICS, NullMetrics

RETRYABLE_STATUS = frozenset({408, 425, 429})

Signer = Callable[[bytes], dict[str, str]]


class Courier:
    def __init__(
        self,
        url: str,
        *,
        kind: str,
        client: httpx.AsyncClient | None = None,
        headers: dict[str, str] | None = None,
        sign: Signer | None = None,
        envelope: str | None = None,
        batch_size: int = 100,
        flush_seconds: float = 1.0,
        max_buffer: int = 10_000,
        max_attempts: int = 5,
        timeout_seconds: float = 5.0,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        close_seconds: float = 5.0,
        metrics: NullMetrics = NULL_METRICS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.kind = kind
        self.client = client
        self.headers = {"Content-Type": "application/json", "User-Agent": "bastion", **(headers or {})}
        self.sign = sign
        self.envelope = envelope
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self.max_attempts = max_attempts
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.close_seconds = close_seconds
        self.metrics = metrics
        self.sleep = sleep
        self.buffer: deque[dict[str, Any]] = deque()
        self.stats = {"delivered": 0, "retried": 0, "dropped": 0}
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger("bastion.delivery")

    @property
    def dropped(self) -> int:
        return self.stats["dropped"]

    def offer(self, document: dict[str, Any]) -> bool:
        """Queue ``document``; False (counted and logged as dropped) when the buffer is full."""
        if self._closing or len(self.buffer) >= self.max_buffer:
            self._drop(1, "queue_full" if not self._closing else "shutdown", document)
            return False
        self.buffer.append(document)
        self._idle.clear()
        self.metrics.delivery_backlog(self.kind, len(self.buffer))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"courier-{self.kind}")
        if len(self.buffer) >= self.batch_size:
            self._wake.set()
        return True

    async def flush(self) -> None:
        """Wait until everything offered so far has been delivered or dropped."""
        await self._idle.wait()

    def _drop(self, count: int, reason: str, document: dict[str, Any] | None = None) -> None:
        self.stats["dropped"] += count
        self.metrics.delivery_dropped(self.kind, reason, count)
        about = {"id": document.get("id")} if document and "id" in document else {}
        self.log.error("delivery_dropped", kind=self.kind, count=count, reason=reason, **about)

    async def _run(self) -> None:
        client = self.client or httpx.AsyncClient(trust_env=False, follow_redirects=False)
        try:
            while self.buffer or not self._closing:
                if not self.buffer or (len(self.buffer) < self.batch_size and not self._closing):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
                    self._wake.clear()
                if not self.buffer:
                    continue
                batch = [self.buffer.popleft() for _ in range(min(self.batch_size, len(self.buffer)))]
                self.metrics.delivery_backlog(self.kind, len(self.buffer))
                try:
                    outcome = await self._post(client, batch)
                except asyncio.CancelledError:
                    self._drop(len(batch), "shutdown", batch[0])
                    raise
                if outcome == "delivered":
                    self.stats["delivered"] += len(batch)
                else:
                    self._drop(len(batch), outcome, batch[0])
                if not self.buffer:
                    self._idle.set()
        finally:
            if self.client is None:
                await client.aclose()

    def _body(self, batch: list[dict[str, Any]]) -> bytes:
        document: Any = {self.envelope: batch} if self.envelope else (batch[0] if len(batch) == 1 else batch)
        return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()

    def _delay(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - spreading retries, not a secret

    async def _post(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> str:
        body = self._body(batch)
        for attempt in range(1, self.max_attempts + 1):
            headers = {**self.headers, **self.sign(body)} if self.sign else self.headers
            try:
                response = await client.post(
                    self.url, content=body, headers=headers, timeout=self.timeout_seconds
                )
            except httpx.HTTPError as exc:  # refused, reset, timed out
                problem = type(exc).__name__
            else:
                if response.is_success:
                    return "delivered"
                if response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
                    self.log.error("delivery_refused", kind=self.kind, status=response.status_code)
                    return "refused"
                problem = f"status {response.status_code}"
            if attempt == self.max_attempts or self._closing:
                break
            self.stats["retried"] += 1
            delay = self._delay(attempt)
            self.log.warning(
                "delivery_retry", kind=self.kind, attempt=attempt, problem=problem, retry_in=round(delay, 2)
            )
            await self.sleep(delay)
        return "gave_up"

    async def aclose(self, grace: float | None = None) -> None:
        """Stop taking documents; give the buffered ones ``grace`` seconds (default
        ``close_seconds``) to leave; count what is left as dropped."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.close_seconds if grace is None else grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self.buffer:
                self._drop(len(self.buffer), "shutdown")
                self.buffer.clear()
            self._idle.set()
