# SPDX-License-Identifier: Apache-2.0
"""Delivering JSON documents to a remote HTTP endpoint without ever holding up a request.

A ``Courier`` takes documents with ``offer`` (synchronous, constant time, never waits) into a
bounded buffer; one background task posts them in batches, retrying a failed batch with
exponential backoff and full jitter. What cannot be kept (the buffer is full, or a batch failed
every attempt) is dropped, counted in ``bastion_delivery_dropped_total`` and logged: never
silently. The backlog is exported as ``bastion_delivery_backlog``. ``aclose`` gives the last
documents a bounded time to leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from typing import Any

import httpx

from bastion.observability.logging import get_logger
from bastion.observability.metrics import NULL_METRICS, NullMetrics

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Courier:
    def __init__(
        self,
        url: str,
        *,
        kind: str,
        headers: dict[str, str] | None = None,
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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.kind = kind
        self.headers = {"Content-Type": "application/json", **(headers or {})}
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
        self.transport = transport
        self.buffer: deque[dict[str, Any]] = deque()
        self.delivered = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger("bastion.delivery")

    def offer(self, document: dict[str, Any]) -> bool:
        """Queue ``document``; False (and counted as dropped) when the buffer is full or closed."""
        if self._closing or len(self.buffer) >= self.max_buffer:
            self._drop(1, "buffer_full" if not self._closing else "closed")
            return False
        self.buffer.append(document)
        self.metrics.delivery_backlog(self.kind, len(self.buffer))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"courier-{self.kind}")
        if len(self.buffer) >= self.batch_size:
            self._wake.set()
        return True

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        self.metrics.delivery_dropped(self.kind, reason, count)
        self.log.error("delivery_dropped", kind=self.kind, count=count, reason=reason, total=self.dropped)

    async def _run(self) -> None:
        async with httpx.AsyncClient(
            timeout=self.timeout_seconds, trust_env=False, follow_redirects=False, transport=self.transport
        ) as client:
            while self.buffer or not self._closing:
                if not self.buffer or (len(self.buffer) < self.batch_size and not self._closing):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
                    self._wake.clear()
                if not self.buffer:
                    continue
                batch = [self.buffer.popleft() for _ in range(min(self.batch_size, len(self.buffer)))]
                self.metrics.delivery_backlog(self.kind, len(self.buffer))
                if await self._post(client, batch):
                    self.delivered += len(batch)
                else:
                    self._drop(len(batch), "undeliverable")

    async def _post(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> bool:
        body: Any = {self.envelope: batch} if self.envelope else (batch[0] if len(batch) == 1 else batch)
        for attempt in range(self.max_attempts):
            try:
                response = await client.post(self.url, json=body, headers=self.headers)
                if response.status_code < 300:
                    return True
                if response.status_code not in RETRYABLE_STATUS:
                    self.log.error("delivery_refused", kind=self.kind, status=response.status_code)
                    return False
                problem = f"status {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            self.log.warning("delivery_retry", kind=self.kind, attempt=attempt + 1, problem=problem)
            if attempt + 1 < self.max_attempts and not self._closing:
                ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
                await asyncio.sleep(random.uniform(0, ceiling))  # noqa: S311 - jitter, not a secret
            elif self._closing:
                return False
        return False

    async def aclose(self) -> None:
        """Stop taking documents and give the buffered ones ``close_seconds`` to leave."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), self.close_seconds)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self.buffer:
                self._drop(len(self.buffer), "shutdown")
                self.buffer.clear()
