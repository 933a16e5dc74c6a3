# SPDX-License-Identifier: Apache-2.0
"""What verifying a token reads, as one read batch, is what the ORM reads, on each backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.auth.models import AuthSession, User
from bastion.auth.repository import IdentityRepository, user_and_session, user_by_id
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import read_batch, unit_of_work

NOW = datetime(2026, 12, 5, 12, 0, 0, 123456, tzinfo=UTC)


async def add(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with unit_of_work(sessionmaker) as session:
        session.add(
            User(
                id="u" * 32,
                email_ciphertext="v1.k.sealed-ü",
                email_index="index",
                password_hash="$argon2id$not-a-real-hash",  # pragma: allowlist secret
                role="admin",
                is_active=False,
                token_version=7,
                created_at=NOW - timedelta(days=3),
                updated_at=NOW,
            )
        )
        await session.flush()
        for name, expires, revoked in (
            ("live", NOW + timedelta(microseconds=1), None),
            ("expired", NOW, None),
            ("ended", NOW + timedelta(days=1), NOW - timedelta(seconds=1)),
        ):
            session.add(
                AuthSession(
                    id=name.ljust(32, "0"),
                    user_id="u" * 32,
                    created_at=NOW,
                    expires_at=expires,
                    revoked_at=revoked,
                )
            )


async def test_the_batch_reads_the_user_and_the_session_as_the_orm_does(migrated_database_url: str) -> None:
    engine = create_engine(migrated_database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        await add(sessionmaker)
        async with sessionmaker() as session:
            loaded = await IdentityRepository(session).user_by_id("u" * 32)
        assert loaded is not None
        read = await read_batch(sessionmaker, user_by_id("u" * 32))
        assert read is not None
        for column in User.__table__.columns:
            assert getattr(read, column.key) == getattr(loaded, column.key), column.key
        assert read.created_at.tzinfo is not None and read.updated_at == NOW
        assert await read_batch(sessionmaker, user_by_id("nobody")) is None
        # A session is live until the instant it expires, and not once it ended.
        for name, live in (("live", True), ("expired", False), ("ended", False), ("unknown", False)):
            user, found = await read_batch(sessionmaker, user_and_session(None, name.ljust(32, "0"), NOW))
            assert (user, found) == (None, live), name
        user, found = await read_batch(sessionmaker, user_and_session("u" * 32, "live".ljust(32, "0"), NOW))
        assert found and user is not None and user.token_version == 7
    finally:
        await engine.dispose()
