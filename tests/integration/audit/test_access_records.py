# SPDX-License-Identifier: Apache-2.0
"""Access records on each backend: written in batches (on SQLite, INSERTs of many rows on the
driver's thread), stored as the table's columns say (the row made from what was noted, when the
batch is written), kept through a database that refuses a batch, and dropped (counted) only beyond
the buffer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit import access
from bastion.audit.access import AccessLog
from bastion.audit.models import AccessRecord
from bastion.auth.principal import AuthMethod, Principal, Role


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AccessRecord]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(AccessRecord).order_by(AccessRecord.request_id))).all())


async def rename(sessionmaker: async_sessionmaker[AsyncSession], old: str, new: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


CALLER = Principal(subject="u1", role=Role.USER, method=AuthMethod.API_KEY, user_id="u1", api_key_id="k1")


def note(log: AccessLog, n: int) -> None:
    state: dict[str, Any] = {"request_id": f"r{n:02d}", "client_ip": "203.0.113.7"}
    if n == 1:
        state["principal"] = CALLER
    log.note("POST", "/api/sessions/{session_id}/messages", 200 + n, 0.0012345, state)


async def test_records_are_stored_as_noted_and_kept_through_a_refused_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    log = AccessLog(max_buffer=5, flush_seconds=3600)
    log.start(sessionmaker)
    try:
        before = datetime.now(UTC)
        for n in range(3):
            note(log, n)
        assert await log.flush() == 3
        records = await stored(sessionmaker)
        assert [r.request_id for r in records] == ["r00", "r01", "r02"]
        first = records[0]
        assert (first.method, first.route, first.status_code, first.latency_ms) == (
            "POST",
            "/api/sessions/{session_id}/messages",
            200,
            1.234,
        )
        assert (first.ip_address, first.user_id, first.api_key_id) == ("203.0.113.7", None, None)
        assert (records[1].user_id, records[1].api_key_id) == ("u1", "k1")
        assert before <= first.timestamp <= datetime.now(UTC)
        assert len({r.id for r in records}) == 3

        # The table is gone for a while: the batch is kept, whole, for the next flush.
        await rename(sessionmaker, "access_logs", "access_logs_away")
        for n in range(3, 7):
            note(log, n)
        assert await log.flush() == 0
        assert len(log.buffer) == 4 and log.dropped == 0
        for n in range(7, 9):
            note(log, n)  # the buffer holds 5: the second is dropped and counted
        assert len(log.buffer) == 5 and log.dropped == 1
        await rename(sessionmaker, "access_logs_away", "access_logs")
        assert await log.flush() == 5
        assert [r.request_id for r in await stored(sessionmaker)] == [f"r{n:02d}" for n in range(8)]
    finally:
        await log.aclose()


def watch_transactions(
    monkeypatch: pytest.MonkeyPatch, log: AccessLog, each: Callable[[int], None] = lambda begun: None
) -> list[int]:
    """How many records were left in the buffer as each of ``log``'s transactions began; ``each``
    is called then with how many have begun (requests finishing meanwhile, say)."""
    left: list[int] = []
    original = access.write_batch

    @contextlib.asynccontextmanager
    async def watched(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
        async with original(maker) as batch:
            left.append(len(log.buffer))
            each(len(left))
            yield batch

    monkeypatch.setattr(access, "write_batch", watched)
    return left


async def test_a_second_of_records_is_written_a_hundred_rows_to_a_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's own write waits behind one batch at most, not behind a whole second's records."""
    log = AccessLog(max_buffer=1000, flush_seconds=3600)
    batches = watch_transactions(monkeypatch, log)
    log.start(sessionmaker)
    try:
        for n in range(350):
            note(log, n)
        assert await log.flush() == 350
        # What was left in the buffer as each transaction began: 100 rows taken each time.
        assert batches == [250, 150, 50, 0]
        assert len(await stored(sessionmaker)) == 350
    finally:
        await log.aclose()


async def test_records_noted_during_a_flush_wait_for_the_next_one(
    sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests keep coming while a flush writes: it writes what was buffered when it began, a
    hundred rows to a transaction, and ends; it never chases the new arrivals one transaction each."""
    log = AccessLog(max_buffer=1000, flush_seconds=3600)

    def arrivals(begun: int) -> None:
        if begun <= 3:  # three requests finish while each of the first three transactions is written
            for n in range(3):
                note(log, 500 + 3 * begun + n)

    left = watch_transactions(monkeypatch, log, arrivals)
    log.start(sessionmaker)
    try:
        for n in range(250):
            note(log, n)
        assert await log.flush() == 250
        # 100, 100 and 50 rows: three transactions, then the flush ends; the arrivals stay.
        assert left == [150, 50 + 3, 0 + 6]
        assert len(log.buffer) == 9
        assert await log.flush() == 9
        assert len(await stored(sessionmaker)) == 259
    finally:
        await log.aclose()


async def test_closing_writes_every_record_left(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    log = AccessLog(max_buffer=1000, flush_seconds=3600)
    log.start(sessionmaker)
    for n in range(230):
        note(log, n)
    await log.aclose()
    assert len(await stored(sessionmaker)) == 230 and not log.buffer
