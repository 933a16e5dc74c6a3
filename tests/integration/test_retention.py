# SPDX-License-Identifier: Apache-2.0
"""The retention purge on SQLite and PostgreSQL, with an injected clock: each window's edges."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.audit.chain import verify
from bastion.audit.events import AuditEvent
from bastion.audit.models import AccessRecord, AuditRecord
from bastion.audit.repository import AuditRepository
from bastion.audit.service import new_record
from bastion.chat.models import ChatMessage, ChatSession
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.privacy.retention import RetentionPeriods, RetentionPurge

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
PERIODS = RetentionPeriods(app=30 * DAY, access=90 * DAY, security=365 * DAY, session_ttl=timedelta(hours=1))
KINDS = ("chat_sessions", "chat_messages", "access_records", "security_records", "request_records")


async def add_chat(db: AsyncSession, name: str, last_active: datetime) -> None:
    """A key-owned session with one message, last active at ``last_active``."""
    db.add(ChatSession(id=name, owner_api_key_id="k", created_at=last_active, last_active_at=last_active))
    await db.flush()  # the session before its message (foreign key)
    message = ChatMessage(id=uuid.uuid4().hex, session_id=name, seq=1, role="user", created_at=last_active)
    message.content_ciphertext = "x"
    db.add(message)
    await db.flush()


def record(event: str, at: datetime) -> AuditRecord:
    made = new_record(AuditEvent.CONFIG_CHANGED, timestamp=at)
    made.event_type = event
    return made


def request(at: datetime) -> AccessRecord:
    return AccessRecord(timestamp=at, method="GET", route="/api/auth/me", status_code=200, latency_ms=1.0)


async def test_purge_keeps_what_is_inside_each_window(migrated_database_url: str) -> None:
    engine = create_engine(migrated_database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        access, security = AuditEvent.CHAT_SESSION_CREATED.value, AuditEvent.AUTH_FAILURE.value
        async with sessionmaker() as db, db.begin():
            await add_chat(db, "inside", NOW - PERIODS.app + MINUTE)
            await add_chat(db, "outside", NOW - PERIODS.app - MINUTE)
            db.add_all([request(NOW - PERIODS.access + MINUTE), request(NOW - PERIODS.access - MINUTE)])
            audit = AuditRepository(db)
            # Appended oldest first, as time writes them: each chain is cut at its start.
            for made in sorted(
                [
                    record(access, NOW - PERIODS.access + MINUTE),
                    record(access, NOW - PERIODS.access - MINUTE),
                    record(security, NOW - PERIODS.access - MINUTE),  # an access period is not its own
                    record(security, NOW - PERIODS.security + MINUTE),
                    record(security, NOW - PERIODS.security - MINUTE),
                    # An event no longer in the vocabulary is kept as a security record.
                    record("legacy.event", NOW - PERIODS.access - MINUTE),
                    record("legacy.event", NOW - PERIODS.security - 2 * MINUTE),
                ],
                key=lambda r: r.timestamp,
            ):
                await audit.append(made)
        purge = RetentionPurge(sessionmaker=sessionmaker, periods=PERIODS, clock=lambda: NOW)
        assert await purge.run() == {
            "chat_sessions": 1,
            "chat_messages": 1,
            "access_records": 1,
            "security_records": 2,
            "request_records": 1,
        }
        assert await purge.run() == dict.fromkeys(KINDS, 0)  # idempotent
        async with sessionmaker() as db:
            assert (await db.scalars(select(ChatSession.id))).all() == ["inside"]
            assert len((await db.scalars(select(ChatMessage.id))).all()) == 1
            kept = {
                (r.event_type, NOW - r.timestamp)
                for r in (await db.scalars(select(AuditRecord))).all()
                if r.event_type != "audit_purged"  # the record of each cut, written at NOW
            }
        assert kept == {
            (access, PERIODS.access - MINUTE),
            (security, PERIODS.access + MINUTE),
            (security, PERIODS.security - MINUTE),
            ("legacy.event", PERIODS.access + MINUTE),
        }
        # Two minutes later what was just inside is just outside: only the clock moved.
        later = RetentionPurge(sessionmaker=sessionmaker, periods=PERIODS, clock=lambda: NOW + 2 * MINUTE)
        assert await later.run() == dict(zip(KINDS, (1, 1, 1, 1, 1), strict=True))
        assert all(report.intact for report in await verify(sessionmaker))
    finally:
        await engine.dispose()


async def test_chat_sessions_are_never_purged_before_they_expire(migrated_database_url: str) -> None:
    engine = create_engine(migrated_database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        periods = RetentionPeriods(app=DAY, access=DAY, security=DAY, session_ttl=2 * DAY)
        async with sessionmaker() as db, db.begin():
            await add_chat(db, "idle", NOW - timedelta(days=1, hours=1))
        purge = RetentionPurge(sessionmaker=sessionmaker, periods=periods, clock=lambda: NOW)
        assert (await purge.run())["chat_sessions"] == 0
    finally:
        await engine.dispose()
