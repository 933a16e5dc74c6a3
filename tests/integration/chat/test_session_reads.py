# SPDX-License-Identifier: Apache-2.0
"""The session and history reads (Core scripts run by ``read_batch``) answer exactly what the ORM's
queries answer: owners (a user, a key, another user, an unknown key), expiry, keyset paging and
its boundaries, ties in time, on SQLite and PostgreSQL. A read batch refuses a write, and leaves
its pooled connection as writable as it found it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.auth.models import User
from bastion.chat.models import ChatMessage, ChatSession
from bastion.chat.repository import (
    MessageRow,
    Owner,
    SessionRow,
    history_page,
    owned_session,
    session_page,
)
from bastion.db.batch import Statement, WriteInReadBatch, steps
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import read_batch, read_only, unit_of_work, write_batch

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ACTIVE_SINCE = NOW - timedelta(minutes=90)
USER, OTHER, KEY = "u" * 32, "v" * 32, "k" * 32
OWNERS = [
    Owner(user_id=USER, api_key_id=None),
    Owner(user_id=USER, api_key_id=KEY),
    Owner(user_id=OTHER, api_key_id=None),
    Owner(user_id=USER, api_key_id="unknown-key"),
]


def minutes_ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


# (id, owner user, owner key, last active): ties in time, one exactly at the expiry boundary, one
# expired, key-owned sessions between the user's.
SESSIONS = [
    ("s-user-a", USER, None, minutes_ago(1)),
    ("s-user-b", USER, None, minutes_ago(2)),
    ("s-user-c", USER, None, minutes_ago(2)),
    ("s-user-d", USER, None, ACTIVE_SINCE),
    ("s-user-expired", USER, None, minutes_ago(91)),
    ("s-key-a", USER, KEY, minutes_ago(2)),
    ("s-key-b", USER, KEY, minutes_ago(3)),
    ("s-key-expired", USER, KEY, minutes_ago(200)),
    ("s-other-a", OTHER, None, minutes_ago(1)),
]
# Messages: five in one of the user's sessions, two in a key's, one in the expired one.
MESSAGES = {"s-user-b": 5, "s-key-a": 2, "s-user-expired": 1}


@pytest.fixture
async def chats(migrated_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(migrated_database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with unit_of_work(sessionmaker) as db:
            for user_id in (USER, OTHER):
                db.add(User(id=user_id, email_ciphertext="x", email_index=user_id, password_hash="x"))
            await db.flush()
            for number, (session_id, user_id, key_id, last_active) in enumerate(SESSIONS):
                db.add(
                    ChatSession(
                        id=session_id,
                        owner_user_id=user_id,
                        owner_api_key_id=key_id,
                        title_ciphertext=None if number % 3 == 0 else f"sealed title {number}",
                        created_at=last_active - timedelta(minutes=number),
                        last_active_at=last_active,
                        message_count=MESSAGES.get(session_id, 0),
                        prompt_tokens=number * 10,
                        completion_tokens=number * 7,
                    )
                )
            await db.flush()
            for session_id, count in MESSAGES.items():
                for seq in range(1, count + 1):
                    reply = seq % 2 == 0
                    db.add(
                        ChatMessage(
                            id=f"{session_id}-{seq}",
                            session_id=session_id,
                            seq=seq,
                            role="assistant" if reply else "user",
                            content_ciphertext=f"sealed {session_id} {seq}",
                            status="incomplete" if seq == 4 else "complete",
                            provider="openai" if reply else None,
                            model="fake-model" if reply else None,
                            prompt_tokens=seq if reply else None,
                            completion_tokens=2 * seq if reply else None,
                            created_at=minutes_ago(30 - seq),
                        )
                    )
        yield sessionmaker
    finally:
        await engine.dispose()


# The ORM's queries for the same answers (what the routes ran before their Core scripts).


def as_session_row(chat: ChatSession) -> SessionRow:
    return SessionRow(*(getattr(chat, name) for name in SessionRow._fields))


def as_message_row(message: ChatMessage) -> MessageRow:
    return MessageRow(*(getattr(message, name) for name in MessageRow._fields))


def owned(owner: Owner) -> object:
    return owner.clause_for(ChatSession.owner_user_id, ChatSession.owner_api_key_id)


async def orm_session(db: AsyncSession, session_id: str, owner: Owner) -> SessionRow | None:
    query = select(ChatSession).where(
        ChatSession.id == session_id, owned(owner), ChatSession.last_active_at >= ACTIVE_SINCE
    )
    chat = (await db.scalars(query)).one_or_none()
    return None if chat is None else as_session_row(chat)


async def orm_sessions(
    db: AsyncSession, owner: Owner, before: datetime | None, limit: int
) -> list[SessionRow]:
    query = (
        select(ChatSession)
        .where(owned(owner), ChatSession.last_active_at >= ACTIVE_SINCE)
        .order_by(ChatSession.last_active_at.desc(), ChatSession.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(ChatSession.last_active_at < before)
    return [as_session_row(chat) for chat in (await db.scalars(query)).all()]


async def orm_history(
    db: AsyncSession, session_id: str, owner: Owner, before_seq: int | None, limit: int
) -> list[MessageRow] | None:
    if await orm_session(db, session_id, owner) is None:
        return None
    query = select(ChatMessage).where(ChatMessage.session_id == session_id)
    if before_seq is not None:
        query = query.where(ChatMessage.seq < before_seq)
    rows: Sequence[ChatMessage] = (
        await db.scalars(query.order_by(ChatMessage.seq.desc()).limit(limit))
    ).all()
    return [as_message_row(message) for message in reversed(rows)]


async def test_session_pages_match_the_orm(chats: async_sessionmaker[AsyncSession]) -> None:
    befores = [None, NOW, ACTIVE_SINCE, *sorted({last_active for *_, last_active in SESSIONS})]
    seen = set()
    async with read_only(chats) as db:
        for owner, before, limit in itertools.product(OWNERS, befores, (1, 2, 3, 100)):
            expected = await orm_sessions(db, owner, before, limit)
            page = session_page(owner, active_since=ACTIVE_SINCE, before=before, limit=limit)
            assert await read_batch(chats, page) == expected, (owner, before, limit)
            seen.update(row.id for row in expected)
    # The fixture's cases are all reached: every active session, no expired one.
    assert seen == {session_id for session_id, *_ in SESSIONS if "expired" not in session_id}


async def test_keyset_paging_walks_a_keys_sessions_once_in_order(
    chats: async_sessionmaker[AsyncSession],
) -> None:
    walked: list[str] = []
    before = None
    for _ in range(len(SESSIONS)):
        page = await read_batch(
            chats, session_page(OWNERS[1], active_since=ACTIVE_SINCE, before=before, limit=1)
        )
        if not page:
            break
        walked.extend(row.id for row in page)
        before = page[-1].last_active_at
    assert walked == ["s-key-a", "s-key-b"]
    # Ties in time come newest id first.
    everything = await read_batch(
        chats, session_page(OWNERS[0], active_since=ACTIVE_SINCE, before=None, limit=100)
    )
    assert [row.id for row in everything] == ["s-user-a", "s-user-c", "s-user-b", "s-user-d"]


async def test_owned_sessions_and_histories_match_the_orm(chats: async_sessionmaker[AsyncSession]) -> None:
    session_ids = [session_id for session_id, *_ in SESSIONS] + ["made-up"]
    found = 0
    async with read_only(chats) as db:
        for session_id, owner in itertools.product(session_ids, OWNERS):
            expected = await orm_session(db, session_id, owner)
            read = await read_batch(chats, owned_session(session_id, owner, active_since=ACTIVE_SINCE))
            assert read == expected, (session_id, owner)
            found += expected is not None
            for before_seq, limit in itertools.product((None, 0, 1, 2, 3, 5, 6), (1, 2, 5, 100)):
                history = await orm_history(db, session_id, owner, before_seq, limit)
                page = history_page(
                    session_id, owner, active_since=ACTIVE_SINCE, before_seq=before_seq, limit=limit
                )
                assert await read_batch(chats, page) == history, (session_id, owner, before_seq, limit)
    assert found == 7  # each active session, seen by its one owner only


async def test_a_read_batch_only_reads_and_leaves_its_connection_writable(
    chats: async_sessionmaker[AsyncSession],
) -> None:
    add = Statement(
        insert(ChatSession.__table__).values(
            id=bindparam("id"),
            owner_user_id=USER,
            created_at=NOW,
            last_active_at=NOW,
            message_count=0,
            prompt_tokens=0,
            completion_tokens=0,
        )
    )
    with pytest.raises(WriteInReadBatch):
        await read_batch(chats, steps(add(id="s-refused")))
    # The same pooled connection writes in the next transaction.
    async with write_batch(chats) as batch:
        await batch.commit(steps(add(id="s-written")))
    listed = await read_batch(chats, session_page(OWNERS[0], active_since=ACTIVE_SINCE, before=None, limit=1))
    assert [row.id for row in listed] == ["s-written"]
