# SPDX-License-Identifier: Apache-2.0
"""Storage behaviour, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, select, text

from bastion.audit.chain import verify
from bastion.audit.events import AuditEvent, Result
from bastion.audit.models import AuditRecord
from bastion.audit.repository import MAX_PAGE, AuditRepository
from bastion.audit.service import AuditService, new_record
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import unit_of_work


async def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrations_upgrade_downgrade_and_reapply(database_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    assert {"audit_logs", "alembic_version"} <= await table_names(database_url)
    await asyncio.to_thread(migrate.upgrade, database_url)  # idempotent
    await asyncio.to_thread(migrate.downgrade, database_url, "base")
    assert "audit_logs" not in await table_names(database_url)
    await asyncio.to_thread(migrate.upgrade, database_url)
    assert "audit_logs" in await table_names(database_url)


@pytest.fixture
async def sessionmaker(migrated_database_url: str):  # type: ignore[no-untyped-def]
    engine = create_engine(migrated_database_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_audit_events_round_trip_with_aware_utc_times(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    service = AuditService(sessionmaker=sessionmaker)
    recorded = await service.record(
        AuditEvent.SERVICE_STARTED,
        actor_type="system",
        actor_id="node-1",
        ip="2001:db8::1",
        request_id="r1",
        details={"version": "1", "nested": {"ok": True}},
    )
    async with unit_of_work(sessionmaker) as session:
        [stored] = await AuditRepository(session).page()
    assert stored.id == recorded.id
    assert stored.event_type == "service_started" and stored.result == "success"
    assert stored.timestamp.tzinfo is not None
    assert stored.timestamp == recorded.timestamp
    assert stored.details == {"version": "1", "nested": {"ok": True}}
    assert stored.ip_address == "2001:db8::1"
    assert (stored.chain, stored.seq, stored.hash) == ("security", 1, recorded.hash)


async def test_unit_of_work_rolls_back_everything_on_error(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError):
        async with unit_of_work(sessionmaker) as session:
            repository = AuditRepository(session)
            await repository.append(new_record(AuditEvent.CONFIG_CHANGED, timestamp=datetime.now(UTC)))
            await repository.append(new_record(AuditEvent.CONFIG_CHANGED, timestamp=datetime.now(UTC)))
            raise RuntimeError("half-way failure")
    async with unit_of_work(sessionmaker) as session:
        assert (await session.execute(text("SELECT COUNT(*) FROM audit_logs"))).scalar_one() == 0
        heads = (await session.execute(text("SELECT chain, seq FROM audit_chain_heads ORDER BY chain"))).all()
    assert [tuple(head) for head in heads] == [("access", 0), ("security", 0)]


async def test_listing_filters_pages_and_caps(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    clock_times = iter(base + timedelta(minutes=i) for i in range(10))
    service = AuditService(sessionmaker=sessionmaker, clock=lambda: next(clock_times))
    for i in range(10):
        await service.record(
            AuditEvent.CONFIG_CHANGED if i % 2 else AuditEvent.SERVICE_STARTED,
            result=Result.FAILURE if i == 9 else Result.SUCCESS,
            actor_id=f"user-{i % 3}",
        )
    async with unit_of_work(sessionmaker) as session:
        repository = AuditRepository(session)
        newest = await repository.page(limit=3)
        assert [r.timestamp.minute for r in newest] == [9, 8, 7]
        older = await repository.page(limit=3, before=(newest[-1].timestamp, newest[-1].id))
        assert [r.timestamp.minute for r in older] == [6, 5, 4]
        changed = await repository.page(event_type="config_changed")
        assert len(changed) == 5
        assert all(r.actor_id == "user-0" for r in await repository.page(actor_id="user-0"))
        assert [r.timestamp.minute for r in await repository.page(result="failure")] == [9]
        assert len(await repository.page(limit=10**9)) == 10  # capped, not an error
        assert MAX_PAGE == 500
        cut = await repository.cut_chain("security", base + timedelta(minutes=5))
        assert cut is not None and (cut["through_seq"], cut["records"]) == (5, 5)
    async with unit_of_work(sessionmaker) as session:
        remaining = (await session.scalars(select(AuditRecord.timestamp))).all()
    assert len(remaining) == 5
    [_access, report] = await verify(sessionmaker)
    assert report.intact and (report.first_seq, report.last_seq) == (6, 10)


async def test_naive_datetimes_are_refused(sessionmaker) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError):
        async with unit_of_work(sessionmaker) as session:
            await AuditRepository(session).append(
                new_record(AuditEvent.CONFIG_CHANGED, timestamp=datetime(2026, 1, 1))
            )


async def test_app_starts_and_is_ready_on_each_backend(make_settings, migrated_database_url: str) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import serve_app

    async with serve_app(make_settings(DATABASE_URL=migrated_database_url)) as (_app, http):
        response = await http.get("/health/ready")
    assert response.json()["checks"]["database"] == "ok"
