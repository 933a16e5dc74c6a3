# SPDX-License-Identifier: Apache-2.0
"""Access records: one row per request in ``access_logs``, written in batches off the request path.

The request path only appends a tuple to a bounded buffer (``note``); a background task inserts
what accumulated every ACCESS_LOG_FLUSH_SECONDS, BATCH_ROWS rows to a transaction: on SQLite each
transaction holds the one writer's lock, and a request's own write waits behind one batch at most
(about 1.5 ms for 100 rows here; a whole second's records at once held it 4 to 5 ms). A database
that cannot take a batch keeps it for the next attempt while the buffer has room; beyond that,
records are dropped, counted (``bastion_delivery_dropped_total{kind="access", reason="queue_full"}``)
and logged.
Probes (``/health``, ``/health/ready``, ``/metrics``) are not recorded: they would be most of the
table.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.models import AccessRecord
from bastion.crypto.randomness import new_ordered_ids
from bastion.db.batch import Statement, steps
from bastion.db.session import write_batch
from bastion.observability.logging import get_logger
from bastion.observability.metrics import NULL_METRICS, NullMetrics

_INSERT = Statement(insert(AccessRecord.__table__))  # type: ignore[arg-type]
UNRECORDED_ROUTES = frozenset({"/health", "/health/ready", "/metrics"})
KIND = "access"
BATCH_ROWS = 100


class AccessLog:
    def __init__(
        self,
        *,
        max_buffer: int = 20_000,
        flush_seconds: float = 1.0,
        batch_size: int = BATCH_ROWS,
        metrics: NullMetrics = NULL_METRICS,
    ) -> None:
        self.max_buffer = max_buffer
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.metrics = metrics
        self.buffer: deque[tuple[Any, ...]] = deque()
        self.written = 0
        self.dropped = 0
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._task: asyncio.Task[None] | None = None
        self.log = get_logger("bastion.access_log")

    def note(self, method: str, route: str, status: int, seconds: float, state: dict[str, Any]) -> None:
        """Keep one finished request (called by the request metrics middleware)."""
        if self._sessionmaker is None or route in UNRECORDED_ROUTES:
            return
        if len(self.buffer) >= self.max_buffer:
            self._drop(1)
            return
        # The facts as they are; the row is made from them in the flush, many at a time (made
        # here, on each request's path, the same work cost several times as much served).
        self.buffer.append(
            (
                time.time(),
                method,
                route,
                status,
                seconds,
                state.get("principal"),
                state.get("client_ip"),
                state.get("request_id"),
            )
        )

    def _drop(self, count: int) -> None:
        self.dropped += count
        self.metrics.delivery_dropped(KIND, "queue_full", count)
        if self.dropped == count or self.dropped % 1000 < count:  # the first drop, then every 1000th
            self.log.error("access_records_dropped", count=count, total=self.dropped)

    def start(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._task = asyncio.get_running_loop().create_task(self._run(), name="access-log")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def flush(self) -> int:
        """Insert what was buffered when the flush began, a batch at a time; returns how many rows
        were written. Records noted meanwhile wait for the next flush: under steady traffic a flush
        that also took them would never end, and would write each hand-off's few new rows as a
        transaction of their own (a transaction per row or two, instead of one per hundred)."""
        written = 0
        pending = len(self.buffer)
        while pending > 0 and self._sessionmaker is not None:
            rows = [self.buffer.popleft() for _ in range(min(self.batch_size, pending))]
            pending -= len(rows)
            try:
                # The table's own insert, one executemany: on SQLite its rows are bound and
                # written on the driver's thread, so a second's batch does not hold the event loop.
                async with write_batch(self._sessionmaker) as batch:
                    made = map(_row, rows, new_ordered_ids(len(rows)))
                    await batch.commit(steps(_INSERT.many(list(made))))
            except Exception as exc:
                self.log.warning("access_records_deferred", count=len(rows), error=type(exc).__name__)
                room = self.max_buffer - len(self.buffer)
                self.buffer.extendleft(reversed(rows[:room]))
                if len(rows) > room:
                    self._drop(len(rows) - room)
                break
            written += len(rows)
        self.written += written
        self.metrics.delivery_backlog(KIND, len(self.buffer))
        return written

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # What is left, and what requests finishing meanwhile noted (a few rounds at most: the
        # server has stopped taking requests; a database that takes nothing ends it at once).
        for _ in range(3):
            if not self.buffer or not await self.flush():
                break
        self._sessionmaker = None


def _row(values: tuple[Any, ...], row_id: str) -> dict[str, Any]:
    at, method, route, status, seconds, principal, ip, request_id = values
    return {
        "id": row_id,
        "timestamp": datetime.fromtimestamp(at, UTC),
        "method": method[:8],
        "route": route,
        "status_code": status,
        "latency_ms": round(seconds * 1000, 3),
        "user_id": getattr(principal, "user_id", None),
        "api_key_id": getattr(principal, "api_key_id", None),
        "ip_address": ip,
        "request_id": request_id,
    }
