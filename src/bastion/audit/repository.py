# SPDX-License-Identifier: Apache-2.0
"""Queries over the audit table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select, update
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

    async def purge_before(
        self,
        cutoff: datetime,
        *,
        only: Collection[str] | None = None,
        excluding: Collection[str] | None = None,
    ) -> int:
        """Delete records older than ``cutoff`` (of the ``only`` events, or all but ``excluding``)."""
        statement = delete(AuditRecord).where(AuditRecord.created_at < cutoff)
        if only is not None:
            statement = statement.where(AuditRecord.event.in_(list(only)))
        if excluding is not None:
            statement = statement.where(AuditRecord.event.not_in(list(excluding)))
        result = await self.session.execute(statement)
        return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def naming(subjects: Collection[str]) -> ColumnElement[bool]:
        """Records whose actor or target is one of ``subjects`` (a user id, their key ids)."""
        names = list(subjects)
        return or_(AuditRecord.actor_id.in_(names), AuditRecord.target_id.in_(names))

    async def forget_addresses(self, subjects: Collection[str]) -> int:
        """Clear the client address of every record naming ``subjects``: after an erasure those
        records keep ids only, and an address is personal data."""
        result = await self.session.execute(
            update(AuditRecord).where(self.naming(subjects), AuditRecord.ip.is_not(None)).values(ip=None),
            execution_options={"synchronize_session": False},
        )
        return int(getattr(result, "rowcount", 0) or 0)
