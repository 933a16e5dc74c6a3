# SPDX-License-Identifier: Apache-2.0
"""The scheduled deletion of what is past its retention period.

| what | counted from | kept (days) |
|---|---|---|
| chat sessions and their messages | last activity | RETENTION_DAYS_APP (30; at least SESSION_TTL_MINUTES) |
| access records (audit events of kind ``access``) | when written | RETENTION_DAYS_ACCESS (90) |
| request records (``access_logs``) | when written | RETENTION_DAYS_ACCESS (90) |
| security records (every other audit event) | when written | RETENTION_DAYS_SECURITY (365) |

Which audit event is which kind is the explicit table ``RECORD_KINDS`` in ``audit/events.py``;
an event name not in it (an older version's) is kept as a security record. An audit chain is cut
at its oldest end only (``AuditRepository.cut_chain``): what remains verifies from the new anchor,
and each cut is itself recorded (``audit_purged``, in the security chain, with the anchor). Each
run is a set of DELETEs of what is past its cutoff, each in its own short transaction: idempotent,
safe on several instances at once, and a second run finds nothing more. Time comes from the
injected clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent, RecordKind
from bastion.audit.repository import AuditRepository
from bastion.audit.service import new_record
from bastion.audit.sinks import fanout_of
from bastion.chat.repository import ChatRepository
from bastion.db.session import unit_of_work
from bastion.db.types import utcnow
from bastion.settings import Settings


@dataclass(frozen=True, slots=True)
class RetentionPeriods:
    app: timedelta
    access: timedelta
    security: timedelta
    #: an idle chat session stays usable this long: never deleted before it has expired
    session_ttl: timedelta = timedelta(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPeriods:
        return cls(
            app=timedelta(days=settings.retention_days_app),
            access=timedelta(days=settings.retention_days_access),
            security=timedelta(days=settings.retention_days_security),
            session_ttl=timedelta(minutes=settings.session_ttl_minutes),
        )


class RetentionPurge:
    """Deletes what is past its retention period; ``run`` reports the count of each kind."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        periods: RetentionPeriods,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.periods = periods
        self.clock = clock

    async def run(self) -> dict[str, int]:
        now = self.clock()
        periods = self.periods
        async with unit_of_work(self.sessionmaker) as session:
            sessions, messages = await ChatRepository(session).purge_idle(
                idle_before=now - max(periods.app, periods.session_ttl)
            )
        async with unit_of_work(self.sessionmaker) as session:
            requests = await AuditRepository(session).purge_access_records(now - periods.access)
        access_records = await self._cut(RecordKind.ACCESS, now - periods.access, now)
        security_records = await self._cut(RecordKind.SECURITY, now - periods.security, now)
        return {
            "chat_sessions": sessions,
            "chat_messages": messages,
            "access_records": access_records,
            "security_records": security_records,
            "request_records": requests,
        }

    async def _cut(self, kind: RecordKind, cutoff: datetime, now: datetime) -> int:
        """Cut ``kind``'s chain before ``cutoff`` and record the cut (with its new anchor)."""
        async with unit_of_work(self.sessionmaker) as session:
            audit = AuditRepository(session)
            cut = await audit.cut_chain(kind.value, cutoff)
            if cut is None:
                return 0
            record = await audit.append(
                new_record(AuditEvent.AUDIT_PURGED, timestamp=now, actor_type="system", details=cut)
            )
        await fanout_of(self.sessionmaker).publish(record)
        return int(cut["records"])
