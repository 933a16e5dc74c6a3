# SPDX-License-Identifier: Apache-2.0
"""Queries over the identity tables. Conditional updates return whether they took effect."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.auth.models import AuthSession, Invitation, PasswordResetToken, RefreshToken, User
from bastion.db.batch import Script, Statement


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# -- what verifying an access token reads, as one read batch ----------------------------------------
# A token not in the auth cache is checked against its user's row and its session on every request
# of a client that asks less than once a second: through the ORM that read was a session of its own,
# four hand-offs to SQLite's thread and about 1.5 ms of the event loop; as a read batch it is one.

_USER_COLUMNS = tuple(User.__table__.columns)
_USER_ATTRIBUTES = tuple(User.__mapper__.get_property_by_column(column).key for column in _USER_COLUMNS)
USER_BY_ID = Statement(select(*_USER_COLUMNS).where(User.id == bindparam("user_id")))
LIVE_SESSION = Statement(
    select(AuthSession.id).where(
        AuthSession.id == bindparam("session_id"),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > bindparam("now"),
    )
)


def user_of(row: Sequence[Any]) -> User:
    """A user's row read by ``USER_BY_ID``, as the (unattached) ORM object the ORM would load."""
    return User(**dict(zip(_USER_ATTRIBUTES, row, strict=True)))


def user_by_id(user_id: str) -> Script[User | None]:
    rows = yield USER_BY_ID(user_id=user_id)
    return user_of(rows[0]) if rows else None


def user_and_session(user_id: str | None, session_id: str, now: datetime) -> Script[tuple[User | None, bool]]:
    """The user's row (not read when ``user_id`` is None: the caller has it) and whether the
    session exists, has not ended and has not expired at ``now``."""
    user = (yield from user_by_id(user_id)) if user_id is not None else None
    live = yield LIVE_SESSION(session_id=session_id, now=now)
    return user, bool(live)


class IdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- users -----------------------------------------------------------------------------------

    async def user_by_email_index(self, indexes: Sequence[str]) -> User | None:
        """The user whose address has one of these blind indexes (one per configured key)."""
        return await self.session.scalar(select(User).where(User.email_index.in_(indexes)))

    async def user_by_id(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def page_users(
        self,
        *,
        role: str | None,
        active: bool | None,
        email_indexes: Sequence[str] | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> Sequence[User]:
        """Accounts newest first, after the keyset position ``before`` (creation time, id).

        ``email_indexes`` narrows to the one account with that address (its blind indexes): the
        addresses are sealed, so no other search over them is possible.
        """
        query = select(User).order_by(User.created_at.desc(), User.id.desc()).limit(limit)
        if role is not None:
            query = query.where(User.role == role)
        if active is not None:
            query = query.where(User.is_active.is_(active))
        if email_indexes is not None:
            query = query.where(User.email_index.in_(email_indexes))
        if before is not None:
            at, last_id = before
            query = query.where(or_(User.created_at < at, and_(User.created_at == at, User.id < last_id)))
        return (await self.session.scalars(query)).all()

    async def add_user(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user

    async def update_user(self, user_id: str, *, now: datetime, bump_version: bool, **values: object) -> bool:
        statement = update(User).where(User.id == user_id).values(updated_at=now, **values)
        if bump_version:
            statement = statement.values(token_version=User.token_version + 1)
        return _rowcount(await self.session.execute(statement)) == 1

    # -- sessions and refresh tokens -------------------------------------------------------------

    async def add_session(self, auth_session: AuthSession) -> None:
        self.session.add(auth_session)
        await self.session.flush()

    async def get_session(self, session_id: str) -> AuthSession | None:
        return await self.session.get(AuthSession, session_id)

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def refresh_token_by_hash(self, token_hash: str) -> RefreshToken | None:
        return await self.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))

    async def mark_refresh_token_used(self, token_id: str, now: datetime) -> bool:
        """Atomically claim a refresh token: of concurrent callers exactly one gets True."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
        )
        return _rowcount(result) == 1

    async def revoke_session(self, session_id: str, *, now: datetime, reason: str) -> bool:
        result = await self.session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return _rowcount(result) == 1

    async def revoke_user_sessions(self, user_id: str, *, now: datetime, reason: str) -> list[str]:
        """Revoke every open session of the user; the ids of those this call revoked."""
        return await self._revoke_open_sessions(AuthSession.user_id == user_id, now=now, reason=reason)

    async def revoke_all_sessions(self, *, now: datetime, reason: str) -> list[str]:
        """Revoke every open session of every user; the ids of those this call revoked."""
        return await self._revoke_open_sessions(true(), now=now, reason=reason)

    async def _revoke_open_sessions(
        self, which: ColumnElement[bool], *, now: datetime, reason: str
    ) -> list[str]:
        result = await self.session.execute(
            update(AuthSession)
            .where(which, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(AuthSession.id),
            execution_options={"synchronize_session": False},
        )
        return list(result.scalars().all())

    async def bump_all_token_versions(self, *, now: datetime) -> None:
        """Every user's token version moves on: every access token issued so far is refused."""
        await self.session.execute(
            update(User).values(token_version=User.token_version + 1, updated_at=now),
            execution_options={"synchronize_session": False},
        )

    # -- password reset tokens -------------------------------------------------------------------

    async def add_reset_token(self, token: PasswordResetToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def reset_token_by_hash(self, token_hash: str) -> PasswordResetToken | None:
        return await self.session.scalar(
            select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash)
        )

    async def consume_reset_token(self, token_id: str, now: datetime) -> bool:
        result = await self.session.execute(
            update(PasswordResetToken)
            .where(
                PasswordResetToken.id == token_id,
                PasswordResetToken.used_at.is_(None),
                PasswordResetToken.expires_at > now,
            )
            .values(used_at=now)
        )
        return _rowcount(result) == 1

    async def invalidate_reset_tokens(self, user_id: str, now: datetime) -> None:
        await self.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
        )

    # -- invitations -----------------------------------------------------------------------------

    async def add_invitation(self, invitation: Invitation) -> None:
        self.session.add(invitation)
        await self.session.flush()

    async def live_invitation(self, token_hash: str, *, now: datetime) -> Invitation | None:
        return await self.session.scalar(
            select(Invitation).where(
                Invitation.token_hash == token_hash, Invitation.used_at.is_(None), Invitation.expires_at > now
            )
        )

    async def consume_invitation(self, invitation_id: str, *, user_id: str | None, now: datetime) -> bool:
        """Spend a live invitation; of concurrent callers exactly one gets True."""
        result = await self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id, Invitation.used_at.is_(None), Invitation.expires_at > now)
            .values(used_at=now, used_by=user_id)
        )
        return _rowcount(result) == 1

    # -- erasure ---------------------------------------------------------------------------------

    async def erase_user(self, user_id: str, *, now: datetime) -> list[str] | None:
        """Delete the account with its sessions and tokens; None when there is no such account.

        Returns the sessions that could still carry live access tokens (neither revoked nor past
        their end), for the denylist. Invitations the user spent keep their ids but lose the
        address they were bound to (the user's). Rows are deleted explicitly, children first, so
        the result is the same with or without foreign-key cascades (SQLite connections opened
        without them).
        """
        if await self.session.get(User, user_id) is None:
            return None
        live = await self.session.scalars(
            select(AuthSession.id).where(
                AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > now
            )
        )
        ended = list(live.all())
        await self.session.execute(delete(RefreshToken).where(RefreshToken.user_id == user_id))
        await self.session.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user_id))
        await self.session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))
        await self.session.execute(
            update(Invitation).where(Invitation.used_by == user_id).values(email_ciphertext=None)
        )
        await self.session.execute(delete(User).where(User.id == user_id))
        return ended

    # -- purge -----------------------------------------------------------------------------------

    async def purge(self, *, now: datetime, keep_revoked_until: datetime) -> dict[str, int]:
        """Delete what can never be used again: expired refresh/reset tokens, dead sessions."""
        tokens = await self.session.execute(
            delete(RefreshToken).where(
                or_(RefreshToken.expires_at <= now, RefreshToken.used_at <= keep_revoked_until)
            )
        )
        resets = await self.session.execute(
            delete(PasswordResetToken).where(
                or_(PasswordResetToken.expires_at <= now, PasswordResetToken.used_at.is_not(None))
            )
        )
        # Revoked sessions are kept a while so a replayed refresh token is still recognised as
        # reuse (and audited) rather than as an unknown token.
        sessions = await self.session.execute(
            delete(AuthSession).where(
                or_(AuthSession.expires_at <= now, AuthSession.revoked_at <= keep_revoked_until)
            )
        )
        return {
            "refresh_tokens": _rowcount(tokens),
            "password_reset_tokens": _rowcount(resets),
            "sessions": _rowcount(sessions),
        }
