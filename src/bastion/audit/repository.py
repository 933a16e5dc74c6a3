# SPDX-License-Identifier: Apache-2.0
"""Writing to and querying the audit log inside a caller's transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.audit.chain import GENESIS, record_hash, seal_address
from bastion.audit.events import kind_of
from bastion.audit.models import AccessRecord, AuditChainHead, AuditRecord
from bastion.crypto.randomness import new_id

MAX_PAGE = 500


class AuditChainMissing(RuntimeError):
    """A chain's head row is gone: appending would restart a chain that has records."""


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def append(self, record: AuditRecord) -> AuditRecord:
        """Add ``record`` at the end of its chain (the kind of its event).

        Taking the next position is an UPDATE of the chain's head, so concurrent writers (other
        tasks, other instances) queue on the head's row lock (SQLite: the write lock every write
        transaction holds) and each record follows exactly the one before it.
        """
        record.id = record.id or new_id()  # hashed, so known before the insert
        record.chain = kind_of(record.event_type).value
        seal_address(record)
        head = AuditChainHead.__table__.c
        taken: tuple[Any, ...] | None = (
            await self.session.execute(
                update(AuditChainHead)
                .where(head.chain == record.chain)
                .values(seq=head.seq + 1)
                .returning(head.seq, head.hash)
            )
        ).one_or_none()
        if taken is None:
            if await self.session.scalar(select(func.count()).where(AuditRecord.chain == record.chain)):
                raise AuditChainMissing(record.chain)
            await self.session.execute(
                insert(AuditChainHead).values(
                    chain=record.chain, seq=1, hash=GENESIS, anchor_seq=0, anchor_hash=GENESIS
                )
            )
            taken = (1, GENESIS)
        record.seq, record.prev_hash = int(taken[0]), str(taken[1])
        record.hash = record_hash(record, record.prev_hash)
        self.session.add(record)
        await self.session.flush()
        await self.session.execute(
            update(AuditChainHead).where(head.chain == record.chain).values(hash=record.hash)
        )
        return record

    async def page(
        self,
        *,
        event_type: str | None = None,
        actor_id: str | None = None,
        ip_address: str | None = None,
        result: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> Sequence[AuditRecord]:
        """Newest first; ``before`` (timestamp, id) of the last row seen pages backwards."""
        query = select(AuditRecord).order_by(AuditRecord.timestamp.desc(), AuditRecord.id.desc())
        for column, value in (
            (AuditRecord.event_type, event_type),
            (AuditRecord.actor_id, actor_id),
            (AuditRecord.ip_address, ip_address),
            (AuditRecord.result, result),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(AuditRecord.timestamp >= since)
        if until is not None:
            query = query.where(AuditRecord.timestamp < until)
        if before is not None:
            moment, record_id = before
            query = query.where(
                or_(
                    AuditRecord.timestamp < moment,
                    and_(AuditRecord.timestamp == moment, AuditRecord.id < record_id),
                )
            )
        result_rows = await self.session.scalars(query.limit(max(1, min(limit, MAX_PAGE))))
        return result_rows.all()

    async def cut_chain(self, chain: str, cutoff: datetime) -> dict[str, Any] | None:
        """Delete the oldest records of ``chain``, up to the last one older than ``cutoff``.

        Always a prefix (by position, not by time: clocks of several instances may disagree by a
        little), so what remains still verifies from the new anchor: the position and hash of the
        last record deleted. Returns what was cut (None when nothing was due).
        """
        through = await self.session.scalar(
            select(func.max(AuditRecord.seq)).where(
                AuditRecord.chain == chain, AuditRecord.timestamp < cutoff
            )
        )
        if through is None:
            return None
        anchor_hash = await self.session.scalar(
            select(AuditRecord.hash).where(AuditRecord.chain == chain, AuditRecord.seq == through)
        )
        result = await self.session.execute(
            delete(AuditRecord).where(AuditRecord.chain == chain, AuditRecord.seq <= through)
        )
        await self.session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.chain == chain)
            .values(anchor_seq=through, anchor_hash=anchor_hash)
        )
        return {
            "chain": chain,
            "through_seq": int(through),
            "anchor_hash": anchor_hash,
            "records": int(getattr(result, "rowcount", 0) or 0),
        }

    async def purge_access_records(self, cutoff: datetime) -> int:
        result = await self.session.execute(delete(AccessRecord).where(AccessRecord.timestamp < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def naming(subjects: Collection[str]) -> ColumnElement[bool]:
        """Records whose actor or target is one of ``subjects`` (a user id, their key ids)."""
        names = list(subjects)
        return or_(AuditRecord.actor_id.in_(names), AuditRecord.target_id.in_(names))

    async def forget_addresses(self, subjects: Collection[str]) -> int:
        """Clear the client address (and its nonce) of every record naming ``subjects``, and the
        access records of those subjects: after an erasure those records keep ids only, and an
        address is personal data. The chain still verifies through the address's commitment."""
        names = list(subjects)
        result = await self.session.execute(
            update(AuditRecord)
            .where(self.naming(names), AuditRecord.ip_address.is_not(None))
            .values(ip_address=None, ip_nonce=None),
            execution_options={"synchronize_session": False},
        )
        await self.session.execute(
            delete(AccessRecord).where(
                or_(AccessRecord.user_id.in_(names), AccessRecord.api_key_id.in_(names))
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
