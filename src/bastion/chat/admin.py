# SPDX-License-Identifier: Apache-2.0
"""Every owner's active chat sessions, for administrators: counts, a list, and ending one.

Only ids, owners, times and counts: a session's title and messages are sealed content and stay
out of the admin view. Ending a session goes through the owner's own path
(``ChatService.delete_session``), so it deletes the messages and frees the quota slot exactly as
the owner's DELETE does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.chat.models import ChatSession
from bastion.chat.repository import ChatRepository, Owner
from bastion.chat.service import ChatService
from bastion.db.session import read_only
from bastion.errors import NotFound

BUSIEST_OWNERS = 20


@dataclass(frozen=True, slots=True)
class SessionCounts:
    """Active sessions as stored, and the slots the quota holds (what the caps count)."""

    total: int
    slots_held: int
    busiest: list[tuple[str, int]]  # (owner identity, active sessions), most first
    owner_active: int | None  # the filtered owner's, when a filter was given


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id: str
    owner: str  # key:<id> or user:<id>, the identity its quota slot is counted against
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    message_count: int


def parse_owner(identity: str) -> Owner | None:
    """``key:<id>`` or ``user:<id>`` as an owner; None for anything else."""
    kind, _, value = identity.partition(":")
    if not value:
        return None
    if kind == "key":
        return Owner(user_id=None, api_key_id=value)
    if kind == "user":
        return Owner(user_id=value, api_key_id=None)
    return None


class SessionAdministration:
    def __init__(self, *, chat: ChatService, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.chat = chat
        self.sessionmaker = sessionmaker

    def _active_since(self) -> datetime:
        return self.chat.clock() - self.chat.limits.session_ttl

    def _view(self, row: ChatSession) -> ActiveSession:
        owner = Owner(user_id=row.owner_user_id, api_key_id=row.owner_api_key_id)
        return ActiveSession(
            id=row.id,
            owner=owner.identity,
            created_at=row.created_at,
            last_active_at=row.last_active_at,
            expires_at=row.last_active_at + self.chat.limits.session_ttl,
            message_count=row.message_count,
        )

    async def counts(self, owner: Owner | None = None) -> SessionCounts:
        since = self._active_since()
        async with read_only(self.sessionmaker) as db:
            repo = ChatRepository(db)
            total = await repo.count_active(active_since=since)
            busiest = await repo.busiest_owners(active_since=since, limit=BUSIEST_OWNERS)
            owner_active = await repo.count_active(active_since=since, owner=owner) if owner else None
        return SessionCounts(
            total=total,
            slots_held=await self.chat.quota.active(),
            busiest=[(who.identity, count) for who, count in busiest],
            owner_active=owner_active,
        )

    async def page(
        self, *, owner: Owner | None, before: tuple[datetime, str] | None, limit: int
    ) -> list[ActiveSession]:
        async with read_only(self.sessionmaker) as db:
            rows = await ChatRepository(db).page_active(
                active_since=self._active_since(), owner=owner, before=before, limit=limit
            )
            return [self._view(row) for row in rows]

    async def end(self, session_id: str) -> Owner:
        """End one session, whoever owns it (idle or not); its owner, for the audit record."""
        async with read_only(self.sessionmaker) as db:
            owner = await ChatRepository(db).owner_of(session_id)
        if owner is None:
            raise NotFound("Chat session not found")
        await self.chat.delete_session(owner, session_id)
        return owner
