# SPDX-License-Identifier: Apache-2.0
"""Recording audit events: the chain in the database, then every other sink."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.context import CURRENT
from bastion.audit.events import AuditEvent, Result
from bastion.audit.models import AuditRecord
from bastion.audit.repository import AuditRepository
from bastion.audit.sinks import fanout_of
from bastion.db.session import unit_of_work
from bastion.db.types import utcnow


def new_record(
    event: AuditEvent,
    *,
    timestamp: datetime,
    result: Result = Result.SUCCESS,
    actor_type: str | None = None,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    status_code: int | None = None,
    anomaly_flags: Iterable[str] = (),
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """An audit record, with the method, route template, latency and id of the request it is
    written in (when it is written in one)."""
    facts = CURRENT.get()
    return AuditRecord(
        timestamp=timestamp,
        event_type=str(event),
        result=str(result),
        actor_type=actor_type,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        ip_address=ip,
        method=facts.method() if facts else None,
        route=facts.route() if facts else None,
        latency_ms=facts.latency_ms() if facts else None,
        request_id=request_id or (facts.request_id() if facts else None),
        status_code=status_code,
        anomaly_flags=sorted(set(anomaly_flags)),
        details=details or {},
    )


class AuditService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock

    async def record(self, event: AuditEvent, **fields: Any) -> AuditRecord:
        """Store one event in its own transaction (so it survives a rollback of the caller's
        work) before returning, then hand it to the other sinks and the anomaly detectors.

        Fields: see ``new_record``.
        """
        record = new_record(event, timestamp=self.clock(), **fields)
        fanout = fanout_of(self.sessionmaker)
        if fanout.to_database:
            try:
                async with unit_of_work(self.sessionmaker) as session:
                    await AuditRepository(session).append(record)
            except Exception as exc:
                # The database could not take it (an outage): the record is not lost. It goes,
                # whole, to the error log and to the other sinks; the caller still learns of it.
                fanout.unwritten(record, exc)
                await fanout.publish(record)
                raise
        await fanout.publish(record)
        return record
