# SPDX-License-Identifier: Apache-2.0
"""Chat queries. Every lookup of a session filters by owner and idle expiry in SQL itself.

The session and history routes read with scripts of Core statements built once (``session_page``,
``owned_session``, ``history_page``, run by ``read_batch``: on SQLite one hand-off to the driver's
thread), as rows of the columns their views show. ``MessageLog`` runs what one chat message
writes and reads. ``ChatRepository`` (the ORM) serves the rest: creation, deletion, the admin
API, export, erasure and the purge.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    Integer,
    Select,
    Table,
    Update,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.chat.models import ChatMessage, ChatSession, NewMessage
from bastion.db.batch import Rows, Script, Statement, WriteBatch
from bastion.ownership import Owner, of_account

__all__ = [
    "ChatRepository",
    "MessageLog",
    "MessageRow",
    "Owner",
    "SessionRow",
    "Turn",
    "history_page",
    "owned_session",
    "session_page",
]


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    return owner.clause_for(ChatSession.owner_user_id, ChatSession.owner_api_key_id)


_SESSIONS = cast(Table, ChatSession.__table__)
_MESSAGES = cast(Table, ChatMessage.__table__)


def _next_seq_of(*conditions: ColumnElement[bool]) -> Update:
    columns = _SESSIONS.c
    return (
        update(_SESSIONS)
        .where(columns.id == bindparam("session_id"), *conditions)
        .values(message_count=columns.message_count + 1, last_active_at=bindparam("now"))
        .returning(columns.message_count)
    )


def _owned_active(by_key: bool) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The owner's (``Owner.bound_id``) sessions still active (``active_since``): the filter of
    every statement built once that reaches a session for its owner."""
    columns = _SESSIONS.c
    return (
        Owner.bound_clause(columns.owner_user_id, columns.owner_api_key_id, by_key=by_key),
        columns.last_active_at >= bindparam("active_since"),
    )


# The statements of ``MessageLog``, built once (by owner kind where the owner is checked).
_NEXT_OWNED_SEQ = {by_key: Statement(_next_seq_of(*_owned_active(by_key))) for by_key in (False, True)}
_NEXT_SEQ_WITH_TOKENS = _next_seq_of().values(
    prompt_tokens=_SESSIONS.c.prompt_tokens + bindparam("prompt"),
    completion_tokens=_SESSIONS.c.completion_tokens + bindparam("completion"),
)
_NEXT_SEQ = Statement(_NEXT_SEQ_WITH_TOKENS)
_RECENT = (_MESSAGES.c.seq, _MESSAGES.c.id, _MESSAGES.c.role, _MESSAGES.c.content_ciphertext)


def _recent_before(seq: ColumnElement[int]) -> Select[Any]:
    """A session's newest messages before ``seq``, newest first: (seq, id, role, ciphertext)."""
    return (
        select(*_RECENT)
        .where(_MESSAGES.c.session_id == bindparam("session_id"), _MESSAGES.c.seq < seq)
        .order_by(_MESSAGES.c.seq.desc())
        .limit(bindparam("limit", type_=Integer))
    )


_RECENT_MESSAGES = Statement(_recent_before(bindparam("seq", type_=Integer)))
_ADD_MESSAGE = Statement(
    insert(_MESSAGES).values({column.key: bindparam(column.key) for column in _MESSAGES.c})
)


# The parameters of a message's columns in a statement that also updates its session. Not the
# columns' own names: SQLAlchemy reads a parameter named for a column of an UPDATE's table (the
# message's ``id``, ``created_at``, token counts) as a value to SET.
_NEW = "new_"


def _new_columns(message: NewMessage) -> dict[str, Any]:
    return {_NEW + column.key: getattr(message, column.key) for column in _MESSAGES.c if column.key != "seq"}


def _added_in_place(turn: CTE) -> Insert:
    """The message (every column a parameter, ``_new_columns``, but ``seq``) inserted in the place
    ``turn`` reserved (one row of ``message_count``), returning it; nothing when ``turn`` has no row."""
    values = select(
        *(
            turn.c.message_count if column.key == "seq" else bindparam(_NEW + column.key, type_=column.type)
            for column in _MESSAGES.c
        )
    )
    return (
        insert(_MESSAGES)
        .from_select([column.key for column in _MESSAGES.c], values)
        .returning(_MESSAGES.c.seq)
    )


def _opening(by_key: bool) -> Statement:
    """``_open_turn`` as one statement (PostgreSQL): reserve the place, insert the message in it
    and read the history before it. Rows: (seq, then the history's columns or NULLs when there is
    none), newest first; none when the owner has no such session. The history is read in the
    statement's snapshot, taken before the reservation waited for any other writer of the session
    (``_open_turn_at_once`` reads it again then)."""
    turn = _next_seq_of(*_owned_active(by_key)).cte("turn")
    recent = _recent_before(turn.c.message_count).lateral("recent")
    return Statement(
        select(turn.c.message_count, *recent.c)
        .select_from(turn.outerjoin(recent, true()))
        .order_by(recent.c.seq.desc())
        .add_cte(_added_in_place(turn).cte("added"))
    )


_OPEN_TURN_AT_ONCE = {by_key: _opening(by_key) for by_key in (False, True)}
_REPLY_TURN = _NEXT_SEQ_WITH_TOKENS.cte("turn")
# ``_add_reply`` as one statement (PostgreSQL): the reply's place taken and the reply inserted.
_ADD_REPLY_AT_ONCE = Statement(_added_in_place(_REPLY_TURN).add_cte(_REPLY_TURN))


class SessionRow(NamedTuple):
    """What a session's view shows (``ChatService._session_view``), as read."""

    id: str
    title_ciphertext: str | None
    created_at: datetime
    last_active_at: datetime
    message_count: int
    prompt_tokens: int
    completion_tokens: int


class MessageRow(NamedTuple):
    """What a message's view shows (``ChatService._message_view``), as read."""

    id: str
    session_id: str
    seq: int
    role: str
    content_ciphertext: str
    status: str
    created_at: datetime
    provider: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None


# The statements of the session and history routes, built once: by owner kind, and by whether a
# page starts after a keyset position (``before``) or at the newest.
_SESSION_VIEW = select(*(_SESSIONS.c[name] for name in SessionRow._fields))
_OWNED_SESSION = {
    by_key: Statement(_SESSION_VIEW.where(_SESSIONS.c.id == bindparam("session_id"), *_owned_active(by_key)))
    for by_key in (False, True)
}
_SESSION_PAGE = {
    (by_key, after): Statement(
        _SESSION_VIEW.where(
            *_owned_active(by_key),
            *((_SESSIONS.c.last_active_at < bindparam("before"),) if after else ()),
        )
        .order_by(_SESSIONS.c.last_active_at.desc(), _SESSIONS.c.id.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    for by_key in (False, True)
    for after in (False, True)
}
_MESSAGE_PAGE = {
    after: Statement(
        select(*(_MESSAGES.c[name] for name in MessageRow._fields))
        .where(
            _MESSAGES.c.session_id == bindparam("session_id"),
            *((_MESSAGES.c.seq < bindparam("before_seq"),) if after else ()),
        )
        .order_by(_MESSAGES.c.seq.desc())
        .limit(bindparam("limit", type_=Integer))
    )
    for after in (False, True)
}


# Scripts for ``read_batch``: they run on SQLite's driver thread (``bastion.db.batch``), so they
# only compute.


def session_page(
    owner: Owner, *, active_since: datetime, before: datetime | None, limit: int
) -> Script[list[SessionRow]]:
    """The owner's active sessions, most recently active first (then by id), up to ``limit``,
    those last active before ``before`` when given."""
    after = {} if before is None else {"before": before}
    rows = yield _SESSION_PAGE[owner.by_key, before is not None](
        active_since=active_since, limit=limit, **after, **owner.bound_id
    )
    return [SessionRow(*row) for row in rows]


def owned_session(session_id: str, owner: Owner, *, active_since: datetime) -> Script[SessionRow | None]:
    """The owner's active session ``session_id``; ``None`` for someone else's, an expired one and
    a made-up id alike."""
    rows = yield _OWNED_SESSION[owner.by_key](
        session_id=session_id, active_since=active_since, **owner.bound_id
    )
    return SessionRow(*rows[0]) if rows else None


def history_page(
    session_id: str, owner: Owner, *, active_since: datetime, before_seq: int | None, limit: int
) -> Script[list[MessageRow] | None]:
    """Up to ``limit`` messages of the owner's active session before ``before_seq`` (else the
    newest), oldest first; ``None`` when the owner has no such session (as ``owned_session``)."""
    if (yield from owned_session(session_id, owner, active_since=active_since)) is None:
        return None
    after = {} if before_seq is None else {"before_seq": before_seq}
    rows = yield _MESSAGE_PAGE[before_seq is not None](session_id=session_id, limit=limit, **after)
    return [MessageRow(*row) for row in reversed(rows)]


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class ChatRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_session(self, chat: ChatSession) -> ChatSession:
        self.session.add(chat)
        await self.session.flush()
        return chat

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


@dataclass(frozen=True, slots=True)
class Turn:
    """A message's reserved place in its session and the history before it."""

    seq: int
    # The newest messages' (id, role, ciphertext), oldest first.
    recent: list[tuple[str, str, str]]


class MessageLog:
    """A chat message's statements, as scripts of its write transaction (``write_batch``).

    Core statements built once: a message is the hot path, and the ORM's identity map and flush
    add nothing to an append-only log. Each method is one hand-off to SQLite's driver thread; on
    PostgreSQL, where each statement is a round trip (``WriteBatch.remote``), each sends one
    statement (a data-modifying WITH) doing what the statements of SQLite's script do.
    """

    def __init__(self, batch: WriteBatch) -> None:
        self.batch = batch

    async def open_turn(
        self,
        message: NewMessage,
        owner: Owner,
        *,
        active_since: datetime,
        now: datetime,
        history: int,
    ) -> Turn | None:
        """Reserve the next sequence number of the owner's active session and touch it, insert
        ``message`` (every column given but ``seq``) in that place, and read up to ``history``
        messages before it; ``None`` (nothing written) when the owner has no such session (someone
        else's, an expired one and a made-up id alike). The transaction stays open: the place is
        the session's until it ends, and rolling it back undoes all of this."""
        opening = _open_turn_at_once if self.batch.remote else _open_turn
        return await self.batch.run(opening(message, owner, active_since, now, history))

    async def add_reply(
        self, message: NewMessage, *, prompt_tokens: int, completion_tokens: int
    ) -> int | None:
        """Reserve the next sequence number, touch the session and add a call's tokens to its totals,
        insert ``message`` in that place and commit: its ``seq``, or ``None`` (nothing written)
        when the session is gone. On PostgreSQL one statement, alone in its transaction."""
        if not self.batch.remote:
            return await self.batch.commit(_add_reply(message, prompt_tokens, completion_tokens))
        rows = await self.batch.alone(
            _ADD_REPLY_AT_ONCE(
                **_new_columns(message),
                session_id=message.session_id,
                now=message.created_at,
                prompt=prompt_tokens,
                completion=completion_tokens,
            )
        )
        return int(rows[0][0]) if rows else None


def _columns(message: NewMessage) -> dict[str, Any]:
    return {column.key: getattr(message, column.key) for column in _MESSAGES.c}


def _turn(seq: int, recent: Rows) -> Turn:
    return Turn(seq=seq, recent=[(row[1], row[2], row[3]) for row in reversed(recent)])


# Scripts: they run on SQLite's driver thread (``bastion.db.batch``), so they only compute.


def _open_turn(
    message: NewMessage, owner: Owner, active_since: datetime, now: datetime, history: int
) -> Script[Turn | None]:
    rows = yield _NEXT_OWNED_SEQ[owner.by_key](
        session_id=message.session_id, active_since=active_since, now=now, **owner.bound_id
    )
    if not rows:
        return None
    seq = int(rows[0][0])
    # The session's first message has no history to read.
    limit = min(history, seq - 1)
    recent = (
        (yield _RECENT_MESSAGES(session_id=message.session_id, seq=seq, limit=limit)) if limit > 0 else []
    )
    yield _ADD_MESSAGE(**{**_columns(message), "seq": seq})
    return _turn(seq, recent)


def _open_turn_at_once(
    message: NewMessage, owner: Owner, active_since: datetime, now: datetime, history: int
) -> Script[Turn | None]:
    rows = yield _OPEN_TURN_AT_ONCE[owner.by_key](
        **_new_columns(message),
        session_id=message.session_id,
        active_since=active_since,
        now=now,
        limit=max(history, 0),
        **owner.bound_id,
    )
    if not rows:
        return None
    seq = int(rows[0][0])
    limit = min(history, seq - 1)
    if limit <= 0:
        return Turn(seq=seq, recent=[])
    recent = [row[1:] for row in rows if row[1] is not None]
    # Every place before ours holds a committed message (a place is reserved and filled in one
    # transaction), so the newest is ``seq - 1``, unless the reservation waited for another writer
    # of the session: the statement's snapshot then predates that writer's message. Read again.
    if recent and recent[0][0] == seq - 1:
        return _turn(seq, recent)
    again = yield _RECENT_MESSAGES(session_id=message.session_id, seq=seq, limit=limit)
    return _turn(seq, again)


def _add_reply(message: NewMessage, prompt_tokens: int, completion_tokens: int) -> Script[int | None]:
    rows = yield _NEXT_SEQ(
        session_id=message.session_id,
        now=message.created_at,
        prompt=prompt_tokens,
        completion=completion_tokens,
    )
    if not rows:
        return None
    seq = int(rows[0][0])
    yield _ADD_MESSAGE(**{**_columns(message), "seq": seq})
    return seq
