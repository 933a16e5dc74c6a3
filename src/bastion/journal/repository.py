# SPDX-License-Identifier: Apache-2.0
"""Journal queries. Every lookup filters by owner in SQL itself."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.journal.models import JournalEntry
from bastion.ownership import Owner, of_account


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    return owner.clause_for(JournalEntry.owner_user_id, JournalEntry.owner_api_key_id)


class JournalRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, entry: JournalEntry) -> JournalEntry:
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def get(self, entry_id: str, owner: Owner) -> JournalEntry | None:
        query = select(JournalEntry).where(JournalEntry.id == entry_id, _owned_by(owner))
        return (await self.session.scalars(query)).one_or_none()

    async def page(
        self, owner: Owner, *, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[JournalEntry]:
        """Newest first, after the position (creation time, id) of the previous page's last entry."""
        query = (
            select(JournalEntry)
            .where(_owned_by(owner))
            .order_by(JournalEntry.created_at.desc(), JournalEntry.id.desc())
            .limit(limit)
        )
        if after is not None:
            created_at, entry_id = after
            query = query.where(
                or_(
                    JournalEntry.created_at < created_at,
                    (JournalEntry.created_at == created_at) & (JournalEntry.id < entry_id),
                )
            )
        return (await self.session.scalars(query)).all()

    async def delete(self, entry_id: str, owner: Owner) -> bool:
        result = await self.session.execute(
            delete(JournalEntry).where(JournalEntry.id == entry_id, _owned_by(owner))
        )
        return bool(getattr(result, "rowcount", 0))

    @staticmethod
    def of_account(user_id: str, key_ids: Collection[str]) -> ColumnElement[bool]:
        return of_account(user_id, key_ids, JournalEntry.owner_user_id, JournalEntry.owner_api_key_id)

    async def erase_account(self, user_id: str, key_ids: Collection[str]) -> int:
        """Delete every entry the account (the person or any of their keys) wrote."""
        result = await self.session.execute(delete(JournalEntry).where(self.of_account(user_id, key_ids)))
        return int(getattr(result, "rowcount", 0) or 0)
