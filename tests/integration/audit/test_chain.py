# SPDX-License-Identifier: Apache-2.0
"""The audit log on both databases: the runbook queries verbatim, the hash chain and what breaks it,
erasure and retention that keep it verifiable, and the move of the first audit table's rows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.chain import verify
from bastion.audit.events import AuditEvent, Result
from bastion.audit.repository import AuditRepository
from bastion.audit.service import AuditService
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import unit_of_work
from bastion.privacy.retention import RetentionPeriods, RetentionPurge

BASE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RUNBOOK_FAILURES = (
    "SELECT * FROM audit_logs WHERE event_type = 'auth_failure' ORDER BY timestamp DESC LIMIT 10;"
)
RUNBOOK_ADDRESS = "SELECT * FROM audit_logs WHERE ip_address = '203.0.113.9' ORDER BY timestamp DESC;"
RUNBOOK_ATTEMPTS = """SELECT ip_address, COUNT(*) AS attempts FROM audit_logs WHERE result = 'failure'
  GROUP BY ip_address ORDER BY attempts DESC;"""


def clock_from(start: datetime, step: timedelta = timedelta(minutes=1)):  # type: ignore[no-untyped-def]
    moments = iter(start + step * i for i in range(10_000))
    return lambda: next(moments)


async def fill(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """Twelve records: failures from three addresses, a success, access events between them."""
    audit = AuditService(sessionmaker=sessionmaker, clock=clock_from(BASE))
    ids = []
    plan = [("203.0.113.9", 5), ("198.51.100.7", 3), ("192.0.2.1", 1)]
    for ip, failures in plan:
        for _ in range(failures):
            record = await audit.record(
                AuditEvent.AUTH_FAILURE,
                result=Result.FAILURE,
                ip=ip,
                details={"method": "password", "reason": "bad_credentials"},
            )
            ids.append(record.id)
    ids.append(
        (await audit.record(AuditEvent.AUTH_SUCCESS, actor_type="user", actor_id="u1", ip="203.0.113.9")).id
    )
    ids.append((await audit.record(AuditEvent.CHAT_SESSION_CREATED, actor_id="u1", target_id="s1")).id)
    ids.append((await audit.record(AuditEvent.TOKEN_REFRESHED, actor_id="u1", ip="203.0.113.9")).id)
    return ids


async def rows(sessionmaker: async_sessionmaker[AsyncSession], sql: str) -> list[dict[str, object]]:
    async with unit_of_work(sessionmaker) as session:
        return [dict(row._mapping) for row in (await session.execute(text(sql))).all()]


async def test_the_runbook_queries_work_verbatim(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await fill(sessionmaker)
    failures = await rows(sessionmaker, RUNBOOK_FAILURES)
    assert len(failures) == 9
    assert all(row["event_type"] == "auth_failure" and row["result"] == "failure" for row in failures)
    # Newest first: the last failure recorded was the 192.0.2.1 one.
    assert [row["ip_address"] for row in failures[:2]] == ["192.0.2.1", "198.51.100.7"]
    by_address = await rows(sessionmaker, RUNBOOK_ADDRESS)
    assert [row["event_type"] for row in by_address] == ["token_refreshed", "auth_success"] + [
        "auth_failure"
    ] * 5
    attempts = await rows(sessionmaker, RUNBOOK_ATTEMPTS)
    assert [(row["ip_address"], row["attempts"]) for row in attempts] == [
        ("203.0.113.9", 5),
        ("198.51.100.7", 3),
        ("192.0.2.1", 1),
    ]


async def test_an_untouched_log_verifies(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await fill(sessionmaker)
    access, security = await verify(sessionmaker)
    assert access.intact and security.intact
    assert (security.first_seq, security.last_seq, security.records) == (1, 10, 10)
    assert (access.first_seq, access.last_seq, access.records) == (1, 2, 2)


async def test_concurrent_writers_extend_one_chain(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    audit = AuditService(sessionmaker=sessionmaker)
    await asyncio.gather(*(audit.record(AuditEvent.AUTH_FAILURE, ip=f"192.0.2.{i}") for i in range(40)))
    _access, security = await verify(sessionmaker)
    assert security.intact and security.records == 40 and security.last_seq == 40


TAMPERING = {
    # what is done to the stored log, and what verify must say about which record
    "edited details": ('UPDATE audit_logs SET details = \'{"reason": "ok"}\' WHERE id = :target', "edited"),
    "edited result": ("UPDATE audit_logs SET result = 'success' WHERE id = :target", "edited"),
    "edited type": ("UPDATE audit_logs SET event_type = 'auth_success' WHERE id = :target", "edited"),
    "edited address": ("UPDATE audit_logs SET ip_address = '192.0.2.200' WHERE id = :target", "edited"),
    "deleted": ("DELETE FROM audit_logs WHERE id = :target", "deleted"),
}


@pytest.mark.parametrize("change", sorted(TAMPERING))
async def test_a_changed_record_is_named(sessionmaker: async_sessionmaker[AsyncSession], change: str) -> None:
    ids = await fill(sessionmaker)
    statement, word = TAMPERING[change]
    target = ids[3]  # the fourth security record
    async with unit_of_work(sessionmaker) as session:
        await session.execute(text(statement), {"target": target})
    _access, security = await verify(sessionmaker)
    assert not security.intact
    assert word in security.problems[0]
    if change == "deleted":
        assert "#4 missing" in security.problems[0] and security.broken_record == ids[4]
    else:
        assert security.broken_record == target and target in security.problems[0]


async def test_an_inserted_record_is_named(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    ids = await fill(sessionmaker)
    async with unit_of_work(sessionmaker) as session:
        # Make room at #4 (shift every later position) and insert a copy of #3 there.
        for seq in range(10, 3, -1):
            await session.execute(
                text("UPDATE audit_logs SET seq = :new WHERE chain = 'security' AND seq = :old"),
                {"new": seq + 1, "old": seq},
            )
        await session.execute(
            text(
                "INSERT INTO audit_logs (id, timestamp, event_type, result, anomaly_flags, details, "
                "chain, seq, prev_hash, hash) SELECT substr(id, 1, 31) || 'x', timestamp, event_type, "
                "result, anomaly_flags, details, chain, 4, hash, hash FROM audit_logs WHERE id = :source"
            ),
            {"source": ids[2]},
        )
        await session.execute(text("UPDATE audit_chain_heads SET seq = seq + 1 WHERE chain = 'security'"))
    _access, security = await verify(sessionmaker)
    assert not security.intact
    assert security.broken_record == ids[2][:31] + "x"


async def test_records_removed_at_the_end_are_noticed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    ids = await fill(sessionmaker)
    async with unit_of_work(sessionmaker) as session:
        await session.execute(text("DELETE FROM audit_logs WHERE id = :last"), {"last": ids[9]})
    _access, security = await verify(sessionmaker)
    assert not security.intact and "#10..#10 missing at the end" in security.problems[0]


async def test_erased_addresses_keep_the_chain_verifiable(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await fill(sessionmaker)
    async with unit_of_work(sessionmaker) as session:
        cleared = await AuditRepository(session).forget_addresses(["u1"])
    assert cleared == 2  # the sign-in and the refresh named u1 and carried an address
    remaining = await rows(sessionmaker, "SELECT ip_address, ip_nonce FROM audit_logs WHERE actor_id = 'u1'")
    assert all(row["ip_address"] is None and row["ip_nonce"] is None for row in remaining)
    access, security = await verify(sessionmaker)
    assert access.intact and security.intact
    assert (access.redacted_addresses, security.redacted_addresses) == (1, 1)


async def test_retention_cuts_chains_at_their_start_and_they_still_verify(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await fill(sessionmaker)  # one record a minute from BASE
    periods = RetentionPeriods(app=timedelta(days=30), access=timedelta(days=1), security=timedelta(days=2))
    now = BASE + timedelta(days=2, minutes=4, seconds=30)  # security records up to minute 4 are due
    counts = await RetentionPurge(sessionmaker=sessionmaker, periods=periods, clock=lambda: now).run()
    assert counts["security_records"] == 5 and counts["access_records"] == 2
    access, security = await verify(sessionmaker)
    assert access.intact and security.intact
    assert security.first_seq == 6
    purges = await rows(sessionmaker, "SELECT details FROM audit_logs WHERE event_type = 'audit_purged'")
    assert len(purges) == 2  # one record per chain cut, in the security chain
    again = await RetentionPurge(sessionmaker=sessionmaker, periods=periods, clock=lambda: now).run()
    assert again["security_records"] == 0 and again["access_records"] == 0
    assert all(report.intact for report in await verify(sessionmaker))


async def test_the_first_audit_table_moves_into_the_chains(database_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url, "0010")
    engine = create_engine(database_url)
    legacy = [
        ("a" * 32, BASE, "auth.login_failed", "failure", None, "203.0.113.9"),
        ("b" * 32, BASE + timedelta(seconds=1), "api_key.rejected", "denied", None, "203.0.113.9"),
        ("c" * 32, BASE + timedelta(seconds=2), "auth.login", "success", "u1", "203.0.113.9"),
        ("d" * 32, BASE + timedelta(seconds=3), "chat.session_created", "success", "u1", None),
        ("e" * 32, BASE + timedelta(seconds=4), "some.retired_event", "success", None, None),
    ]
    try:
        async with engine.begin() as connection:
            for row_id, at, event, outcome, actor, ip in legacy:
                await connection.execute(
                    text(
                        "INSERT INTO audit_events (id, created_at, event, outcome, actor_id, ip, details) "
                        "VALUES (:id, :at, :event, :outcome, :actor, :ip, '{}')"
                    ),
                    {"id": row_id, "at": at, "event": event, "outcome": outcome, "actor": actor, "ip": ip},
                )
        await asyncio.to_thread(migrate.upgrade, database_url)
        sessionmaker = create_sessionmaker(engine)
        moved = await rows(
            sessionmaker,
            "SELECT id, event_type, result, chain, seq, details FROM audit_logs ORDER BY timestamp",
        )
        assert [(r["event_type"], r["result"], r["chain"], r["seq"]) for r in moved] == [
            ("auth_failure", "failure", "security", 1),
            ("auth_failure", "failure", "security", 2),
            ("auth_success", "success", "security", 3),
            ("chat_session_created", "success", "access", 1),
            ("some.retired_event", "success", "security", 4),
        ]
        assert "api_key" in str(moved[1]["details"]) and "password" in str(moved[0]["details"])
        assert all(report.intact for report in await verify(sessionmaker))
        # New records continue the migrated chains.
        await AuditService(sessionmaker=sessionmaker).record(AuditEvent.AUTH_FAILURE, ip="192.0.2.1")
        _access, security = await verify(sessionmaker)
        assert security.intact and security.last_seq == 5
        await asyncio.to_thread(migrate.downgrade, database_url, "0010")
        back = await rows(sessionmaker, "SELECT id, event, outcome FROM audit_events ORDER BY created_at")
        assert [(r["event"], r["outcome"]) for r in back][:3] == [
            ("auth.login_failed", "failure"),
            ("api_key.rejected", "denied"),
            ("auth.login", "success"),
        ]
    finally:
        await engine.dispose()
