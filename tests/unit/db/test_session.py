# SPDX-License-Identifier: Apache-2.0
"""SQLite units of work: writers take the lock up front, readers never wait, overload is a 503."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bastion.db.engine import WRITER_GATE, WriterGate
from bastion.db.errors import database_busy
from bastion.db.session import read_only, unit_of_work, write_batch
from bastion.errors import ServiceUnavailable


async def test_a_write_unit_of_work_holds_the_write_lock_from_its_start(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await session.execute(text("SELECT body FROM notes"))  # a read first, as services do
        other = sqlite3.connect(database, isolation_level=None, timeout=0.05)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()
        await session.execute(text("INSERT INTO notes (body) VALUES ('second')"))
    async with read_only(sessionmaker) as session:
        assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 2


async def test_reads_go_on_while_another_connection_writes(
    sessionmaker: async_sessionmaker[AsyncSession], other_writer: sqlite3.Connection
) -> None:
    other_writer.execute("INSERT INTO notes (body) VALUES ('uncommitted')")
    async with read_only(sessionmaker) as session:
        assert (await session.execute(text("SELECT body FROM notes"))).scalars().all() == ["first"]


async def test_a_lock_wait_past_the_busy_timeout_is_service_unavailable(
    sessionmaker: async_sessionmaker[AsyncSession], other_writer: sqlite3.Connection
) -> None:
    with pytest.raises(ServiceUnavailable) as refused:
        async with unit_of_work(sessionmaker) as session:
            await session.execute(text("INSERT INTO notes (body) VALUES ('late')"))
    assert refused.value.status_code == 503
    assert refused.value.headers["Retry-After"] == str(refused.value.retry_after)
    assert isinstance(refused.value.__cause__, OperationalError)


async def test_other_database_errors_are_not_taken_for_overload(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(OperationalError) as failed:
        async with unit_of_work(sessionmaker) as session:
            await session.execute(text("INSERT INTO missing_table VALUES (1)"))
    assert not database_busy(failed.value)
    assert database_busy(PoolTimeout("QueuePool limit reached"))
    assert not database_busy(ValueError("database is locked"))


async def test_writers_of_one_process_take_turns_instead_of_timing_out(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Thirty writers at once, each longer than SQLite's busy timeout here: none is refused."""

    async def write(number: int) -> None:
        async with unit_of_work(sessionmaker) as session:
            await session.execute(text("SELECT count(*) FROM notes"))
            await asyncio.sleep(0.06)  # holds the write lock past the 50 ms busy timeout
            await session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": f"n{number}"})

    await asyncio.gather(*(write(number) for number in range(30)))
    async with read_only(sessionmaker) as session:
        assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 31


async def test_a_connection_returned_with_a_transaction_open_is_rolled_back(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    """The pool rolls back only what is open (nothing after a commit): here, a transaction begun
    behind SQLAlchemy's back, whose write lock must not go back to the pool with the connection."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        await raw.driver_connection.execute("BEGIN IMMEDIATE")
        await raw.driver_connection.execute("INSERT INTO notes (body) VALUES ('abandoned')")
    other = sqlite3.connect(database, isolation_level=None, timeout=0.05)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        assert other.execute("SELECT count(*) FROM notes").fetchone() == (1,)
    finally:
        other.close()


async def test_a_writer_that_waits_past_the_gates_timeout_is_service_unavailable(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    gate = sessionmaker.kw["info"][WRITER_GATE] = WriterGate(timeout=0.05)
    async with gate.lock:  # another writer of this process holds its turn
        with pytest.raises(ServiceUnavailable):
            async with unit_of_work(sessionmaker) as session:
                await session.execute(text("INSERT INTO notes (body) VALUES ('late')"))
        with pytest.raises(ServiceUnavailable):
            async with write_batch(sessionmaker):
                pass
    assert not gate.lock.locked()
    async with write_batch(sessionmaker):  # a free gate is taken at once
        assert gate.lock.locked()
    assert not gate.lock.locked()
    async with read_only(sessionmaker) as session:
        assert (await session.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 1
