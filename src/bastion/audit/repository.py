# SPDX-License-Identifier: Apache-2.0
"""Queries over the audit table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.audit.models import AuditRecord

MAX_PAGE = 500


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, record: AuditRecord) -> AuditRecord:
        self.session.add(record)
        await self.session.flush()
        return record

    async def list(
        self,
        *,
        event: str | None = None,
        actor_id: str | None = None,
        before: datetime | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRecord]:
        """Newest first; ``before`` pages backwards. ``limit`` is capped at MAX_PAGE."""
        query = select(AuditRecord).order_by(AuditRecord.created_at.desc(), AuditRecord.id.desc())
        if event is not None:
            query = query.where(AuditRecord.event == event)
        if actor_id is not None:
            query = query.where(AuditRecord.actor_id == actor_id)
        if before is not None:
            query = query.where(AuditRecord.created_at < before)
        result = await self.session.scalars(query.limit(max(1, min(limit, MAX_PAGE))))
        return result.all()

    async def purge_before(self, cutoff: datetime) -> int:
        result = await self.session.execute(delete(AuditRecord).where(AuditRecord.created_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)
