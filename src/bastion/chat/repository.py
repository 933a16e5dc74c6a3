# SPDX-License-Identifier: Apache-2.0
"""Chat queries. Every lookup of a session filters by owner and idle expiry in SQL itself."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.chat.models import ChatMessage, ChatSession
from bastion.ownership import Owner, of_account

__all__ = ["ChatRepository", "Owner"]


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    return owner.clause_for(ChatSession.owner_user_id, ChatSession.owner_api_key_id)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class ChatRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_session(self, chat: ChatSession) -> ChatSession:
        self.session.add(chat)
        await self.session.flush()
        return chat

    async def get_session(
        self, session_id: str, owner: Owner, *, active_since: datetime
    ) -> ChatSession | None:
        query = select(ChatSession).where(
            ChatSession.id == session_id, _owned_by(owner), ChatSession.last_active_at >= active_since
        )
        return (await self.session.scalars(query)).one_or_none()

    async def list_sessions(
        self, owner: Owner, *, active_since: datetime, before: datetime | None, limit: int
    ) -> Sequence[ChatSession]:
        query = (
            select(ChatSession)
            .where(_owned_by(owner), ChatSession.last_active_at >= active_since)
            .order_by(ChatSession.last_active_at.desc(), ChatSession.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(ChatSession.last_active_at < before)
        return (await self.session.scalars(query)).all()

    async def delete_session(self, session_id: str, owner: Owner) -> bool:
        # Messages go with the session (ON DELETE CASCADE, and explicitly for SQLite connections
        # opened without foreign keys).
        found = await self.session.execute(
            select(ChatSession.id).where(ChatSession.id == session_id, _owned_by(owner))
        )
        if found.scalar_one_or_none() is None:
            return False
        await self.session.execute(delete(ChatMessage).where(ChatMessage.session_id == session_id))
        await self.session.execute(delete(ChatSession).where(ChatSession.id == session_id))
        return True

    async def next_seq(self, session_id: str, *, now: datetime) -> int:
        """Reserve the next sequence number atomically (one UPDATE ... RETURNING) and touch the session."""
        result = await self.session.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id)
            .values(message_count=ChatSession.message_count + 1, last_active_at=now)
            .returning(ChatSession.message_count)
        )
        return int(result.scalar_one())

    async def add_message(self, message: ChatMessage) -> ChatMessage:
        self.session.add(message)
        await self.session.flush()
        return message

    async def add_usage(self, session_id: str, *, prompt_tokens: int, completion_tokens: int) -> None:
        await self.session.execute(
            update(ChatSession)
            .where(ChatSession.id == session_id)
            .values(
                prompt_tokens=ChatSession.prompt_tokens + prompt_tokens,
                completion_tokens=ChatSession.completion_tokens + completion_tokens,
            )
        )

    async def recent_messages(self, session_id: str, *, limit: int) -> Sequence[ChatMessage]:
        """The newest ``limit`` messages, oldest first."""
        query = (
            select(ChatMessage)
            .where(ChatMessage.session_id == session_id)
            .order_by(ChatMessage.seq.desc())
            .limit(limit)
        )
        return list(reversed((await self.session.scalars(query)).all()))

    async def page_messages(
        self, session_id: str, *, before_seq: int | None, limit: int
    ) -> Sequence[ChatMessage]:
        query = select(ChatMessage).where(ChatMessage.session_id == session_id)
        if before_seq is not None:
            query = query.where(ChatMessage.seq < before_seq)
        rows = (await self.session.scalars(query.order_by(ChatMessage.seq.desc()).limit(limit))).all()
        return list(reversed(rows))

    # -- every owner's sessions (the admin API; ids, owners and counts, never titles) ---------------

    async def owner_of(self, session_id: str) -> Owner | None:
        row = (
            await self.session.execute(
                select(ChatSession.owner_user_id, ChatSession.owner_api_key_id).where(
                    ChatSession.id == session_id
                )
            )
        ).one_or_none()
        return None if row is None else Owner(user_id=row.owner_user_id, api_key_id=row.owner_api_key_id)

    async def page_active(
        self,
        *,
        active_since: datetime,
        owner: Owner | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> Sequence[ChatSession]:
        """Active sessions newest first (creation time, id), after the keyset position ``before``."""
        query = (
            select(ChatSession)
            .where(ChatSession.last_active_at >= active_since)
            .order_by(ChatSession.created_at.desc(), ChatSession.id.desc())
            .limit(limit)
        )
        if owner is not None:
            query = query.where(_owned_by(owner))
        if before is not None:
            at, last_id = before
            query = query.where(
                or_(ChatSession.created_at < at, and_(ChatSession.created_at == at, ChatSession.id < last_id))
            )
        return (await self.session.scalars(query)).all()

    async def count_active(self, *, active_since: datetime, owner: Owner | None = None) -> int:
        query = select(func.count()).select_from(ChatSession)
        query = query.where(ChatSession.last_active_at >= active_since)
        if owner is not None:
            query = query.where(_owned_by(owner))
        return int(await self.session.scalar(query) or 0)

    async def busiest_owners(self, *, active_since: datetime, limit: int) -> list[tuple[Owner, int]]:
        """The owners holding the most active sessions, most first."""
        count = func.count().label("active")
        query = (
            select(ChatSession.owner_user_id, ChatSession.owner_api_key_id, count)
            .where(ChatSession.last_active_at >= active_since)
            .group_by(ChatSession.owner_user_id, ChatSession.owner_api_key_id)
            .order_by(count.desc(), ChatSession.owner_api_key_id, ChatSession.owner_user_id)
            .limit(limit)
        )
        rows = (await self.session.execute(query)).all()
        return [(Owner(user_id=row[0], api_key_id=row[1]), int(row[2])) for row in rows]

    async def purge_idle(self, *, idle_before: datetime) -> tuple[int, int]:
        """Delete sessions idle since before the cutoff, with their messages: (sessions, messages)."""
        stale = select(ChatSession.id).where(ChatSession.last_active_at < idle_before)
        messages = await self.session.execute(delete(ChatMessage).where(ChatMessage.session_id.in_(stale)))
        sessions = await self.session.execute(
            delete(ChatSession).where(ChatSession.last_active_at < idle_before)
        )
        return _rowcount(sessions), _rowcount(messages)

    # -- the account as a whole (export, erasure) ---------------------------------------------

    @staticmethod
    def of_account(user_id: str, key_ids: Collection[str]) -> ColumnElement[bool]:
        return of_account(user_id, key_ids, ChatSession.owner_user_id, ChatSession.owner_api_key_id)

    async def erase_account(self, user_id: str, key_ids: Collection[str]) -> list[tuple[str, Owner]]:
        """Delete every session of the account with its messages: (session id, owner) of each, for
        releasing their quota slots (``Owner.identity``) once committed."""
        which = self.of_account(user_id, key_ids)
        rows = (
            await self.session.execute(
                select(ChatSession.id, ChatSession.owner_user_id, ChatSession.owner_api_key_id).where(which)
            )
        ).all()
        ids = [row.id for row in rows]
        if ids:
            await self.session.execute(delete(ChatMessage).where(ChatMessage.session_id.in_(ids)))
            await self.session.execute(delete(ChatSession).where(ChatSession.id.in_(ids)))
        return [(row.id, Owner(user_id=row.owner_user_id, api_key_id=row.owner_api_key_id)) for row in rows]
