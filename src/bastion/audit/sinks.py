# SPDX-License-Identifier: Apache-2.0
"""Where audit records go besides (or instead of) the database: AUDIT_LOG_SINK.

- ``db`` (the default): the hash-chained ``audit_logs`` table, written before the response.
- ``stdout``: one JSON line per record on standard output (a container's log collector).
- ``file:PATH``: JSON lines appended to PATH, rotated by size (AUDIT_FILE_MAX_BYTES, keeping
  AUDIT_FILE_BACKUPS old files), created readable by the owner only.
- an ``https://`` URL: a collector that receives batches (``{"records": [...]}``) from a
  background courier (bastion.observability.delivery): batched, retried with backoff, bounded;
  never in a request's way, and what it has to drop is counted and logged.

The stdout and file sinks write each record before ``AuditService.record`` returns. Every sink
gets the record as ``document`` renders it: every column but the address's nonce, with the
record's hash, so a copy kept elsewhere pins the chain (docs/audit.md).

A sessionmaker carries its app's fanout in ``sessionmaker.kw["info"]`` (as it carries SQLite's
writer gate), so every ``AuditService`` built on it, wherever it is built, feeds the same sinks.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.models import AuditRecord
from bastion.observability.delivery import Courier
from bastion.observability.logging import get_logger
from bastion.observability.metrics import NULL_METRICS, NullMetrics

AUDIT_FANOUT = "bastion_audit_fanout"
HIDDEN_FIELDS = frozenset({"ip_nonce"})
DOCUMENT_FIELDS = tuple(c.key for c in AuditRecord.__table__.columns if c.key not in HIDDEN_FIELDS)

Observer = Callable[[AuditRecord], Awaitable[None]]


def document(record: AuditRecord) -> dict[str, Any]:
    """A record as the sinks, the export and the admin API show it (plain JSON values)."""
    values: dict[str, Any] = {}
    for name in DOCUMENT_FIELDS:
        value = getattr(record, name)
        values[name] = value.isoformat() if isinstance(value, datetime) else value
    return values


def json_line(record: AuditRecord) -> str:
    return json.dumps(document(record), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


class Sink(Protocol):
    name: str

    def write(self, record: AuditRecord) -> None: ...

    async def aclose(self) -> None: ...


class StreamSink:
    """JSON lines on a text stream (standard output)."""

    name = "stdout"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def write(self, record: AuditRecord) -> None:
        stream = self.stream or sys.stdout
        stream.write(json_line(record) + "\n")
        stream.flush()

    async def aclose(self) -> None:
        return None


class _PrivateRotatingFile(logging.handlers.RotatingFileHandler):
    """The standard size-rotated file, each new file created readable by its owner only."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return open(fd, "a", encoding=self.encoding or "utf-8")

    def handleError(self, record: logging.LogRecord) -> None:
        raise


class FileSink:
    """JSON lines appended to a file, rotated by size (the standard library's rotating handler)."""

    name = "file"

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = _PrivateRotatingFile(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, record: AuditRecord) -> None:
        line = logging.LogRecord("bastion.audit", logging.INFO, __file__, 0, json_line(record), None, None)
        self.handler.emit(line)

    async def aclose(self) -> None:
        self.handler.close()


class CollectorSink:
    """Batches to an HTTP collector through a background courier."""

    name = "http"

    def __init__(self, courier: Courier) -> None:
        self.courier = courier

    def write(self, record: AuditRecord) -> None:
        self.courier.offer(document(record))

    async def aclose(self) -> None:
        await self.courier.aclose()


class AuditFanout:
    """The database flag, the other sinks and the observers of one app's audit records."""

    def __init__(
        self,
        *,
        to_database: bool = True,
        sinks: Sequence[Sink] = (),
        metrics: NullMetrics = NULL_METRICS,
    ) -> None:
        self.to_database = to_database
        self.sinks = list(sinks)
        self.observers: list[Observer] = []
        self.metrics = metrics
        self.log = get_logger("bastion.audit")

    async def publish(self, record: AuditRecord) -> None:
        """Give ``record`` to every sink and observer; a failing one is counted and logged, and
        never fails the action being audited."""
        for sink in self.sinks:
            try:
                sink.write(record)
            except Exception as exc:
                self.metrics.delivery_dropped(f"audit_{sink.name}", "write_failed", 1)
                self.log.error(
                    "audit_sink_failed", sink=sink.name, error=type(exc).__name__, record=record.id
                )
        for observe in self.observers:
            try:
                await observe(record)
            except Exception as exc:
                self.log.warning("audit_observer_failed", error=type(exc).__name__)

    def unwritten(self, record: AuditRecord, error: BaseException) -> None:
        """A record the database refused: logged whole (outside any chain), never silently lost."""
        self.metrics.delivery_dropped("audit_db", "write_failed", 1)
        self.log.error("audit_unwritten", error=type(error).__name__, record=document(record))

    def attach(self, sessionmaker: async_sessionmaker[AsyncSession]) -> AuditFanout:
        sessionmaker.kw.setdefault("info", {})[AUDIT_FANOUT] = self
        return self

    async def aclose(self) -> None:
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception as exc:
                self.log.warning("audit_sink_close_failed", sink=sink.name, error=type(exc).__name__)


DATABASE_ONLY = AuditFanout()


def fanout_of(sessionmaker: async_sessionmaker[AsyncSession]) -> AuditFanout:
    fanout = sessionmaker.kw.get("info", {}).get(AUDIT_FANOUT)
    return fanout if isinstance(fanout, AuditFanout) else DATABASE_ONLY


def parse_sinks(value: str) -> list[str]:
    return [sink.strip() for sink in value.split(",") if sink.strip()]


def build_fanout(settings: Any, *, metrics: NullMetrics = NULL_METRICS) -> AuditFanout:
    """The fanout AUDIT_LOG_SINK describes (couriers start with the running event loop)."""
    sinks: list[Sink] = []
    names = parse_sinks(settings.audit_log_sink)
    for name in names:
        if name == "stdout":
            sinks.append(StreamSink())
        elif name.startswith("file:"):
            sinks.append(
                FileSink(
                    Path(name.removeprefix("file:")).expanduser(),
                    max_bytes=settings.audit_file_max_bytes,
                    backups=settings.audit_file_backups,
                )
            )
        elif name.startswith(("http://", "https://")):
            token = settings.secret("AUDIT_LOG_SINK_TOKEN")
            sinks.append(
                CollectorSink(
                    Courier(
                        name,
                        kind="audit",
                        headers={"Authorization": f"Bearer {token}"} if token else {},
                        envelope="records",
                        max_buffer=settings.audit_sink_buffer,
                        metrics=metrics,
                    )
                )
            )
    return AuditFanout(to_database="db" in names, sinks=sinks, metrics=metrics)
