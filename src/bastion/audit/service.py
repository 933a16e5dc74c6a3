# SPDX-License-Identifier: Apache-2.0
"""Recording audit events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent, Outcome
from bastion.audit.models import AuditRecord
from bastion.audit.repository import AuditRepository
from bastion.db.session import unit_of_work
from bastion.db.types import utcnow


class AuditService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.clock = clock

    async def record(
        self,
        event: AuditEvent,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        actor_type: str | None = None,
        actor_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        ip: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Store one event in its own transaction, so it survives a rollback of the caller's work."""
        record = AuditRecord(
            created_at=self.clock(),
            event=str(event),
            outcome=str(outcome),
            actor_type=actor_type,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            ip=ip,
            request_id=request_id,
            details=details or {},
        )
        async with unit_of_work(self.sessionmaker) as session:
            await AuditRepository(session).add(record)
        return record
