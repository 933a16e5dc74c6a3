# SPDX-License-Identifier: Apache-2.0
"""Write batches on each backend (``bastion.db.batch``): a transaction that is one statement runs
alone (on PostgreSQL in autocommit: one round trip, no BEGIN or COMMIT), whole or not at all,
and leaves its connection as it found it for the transactions after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.db.batch import Statement, WriteInReadBatch, steps
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import read_batch, write_batch
from tests.support.db_counting import recording_checkouts, recording_transactions

NOTES = Table(
    "batch_notes", MetaData(), Column("id", Integer, primary_key=True), Column("body", Text, unique=True)
)
ADD_NOTE = Statement(insert(NOTES).values(body=bindparam("body")).returning(NOTES.c.id))
ALL_NOTES = Statement(select(NOTES.c.body).order_by(NOTES.c.id))


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(NOTES.metadata.create_all)
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def bodies(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    [rows] = await read_batch(sessionmaker, steps(ALL_NOTES()))
    return [row[0] for row in rows]


async def test_a_statement_alone_is_its_own_committed_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    engine = sessionmaker.kw["bind"]
    with recording_transactions(engine) as transactions, recording_checkouts(engine) as uses:
        async with write_batch(sessionmaker) as batch:
            assert batch.remote == database_url.startswith("postgresql")
            rows = await batch.alone(ADD_NOTE(body="alone"))
    assert [tuple(row) for row in rows] == [(1,)]
    assert await bodies(sessionmaker) == ["alone"]
    if batch.remote:
        # The statement and nothing else went to the server; SQLAlchemy saw it committed.
        [use] = uses
        assert [sql.split()[:3] for sql in use.executed] == [["INSERT", "INTO", "batch_notes"]]
        assert [t.outcome for t in transactions] == ["commit"]


async def test_a_statement_alone_is_the_batch_s_only_work_and_nothing_follows_a_commit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(RuntimeError, match="only work"):
        async with write_batch(sessionmaker) as batch:
            await batch.run(steps(ADD_NOTE(body="undone")))
            await batch.alone(ADD_NOTE(body="refused"))
    with pytest.raises(RuntimeError, match="over"):
        async with write_batch(sessionmaker) as batch:
            await batch.alone(ADD_NOTE(body="kept"))
            await batch.run(steps(ADD_NOTE(body="refused")))
    with pytest.raises(RuntimeError, match="over"):
        async with write_batch(sessionmaker) as batch:
            await batch.commit(steps(ADD_NOTE(body="committed")))
            await batch.run(steps(ADD_NOTE(body="refused")))
    assert await bodies(sessionmaker) == ["kept", "committed"]


async def test_a_failing_statement_alone_writes_nothing_and_the_next_transaction_is_whole(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The connection that ran a statement in autocommit goes back to the pool with its own
    isolation: the next batch on it (one after the other, the pool's one connection) is one
    transaction again, rolled back whole on an error."""

    async def refused_batch() -> None:
        with pytest.raises(ValueError, match="refused"):
            async with write_batch(sessionmaker) as batch:
                await batch.run(steps(ADD_NOTE(body="undone")))
                raise ValueError("refused")

    async with write_batch(sessionmaker) as batch:
        await batch.alone(ADD_NOTE(body="first"))
    await refused_batch()
    with pytest.raises(IntegrityError):
        async with write_batch(sessionmaker) as batch:
            await batch.alone(ADD_NOTE(body="first"))
    await refused_batch()
    assert await bodies(sessionmaker) == ["first"]


async def test_a_read_batch_sends_only_its_selects_and_refuses_anything_else(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """A read batch on PostgreSQL is its statements in autocommit: one round trip each, no BEGIN
    or COMMIT (at READ COMMITTED a transaction would give them no common snapshot anyway). On
    every backend it runs SELECTs only: a write is refused before anything of it is sent, and the
    connection serves the transactions after it as before."""
    async with write_batch(sessionmaker) as batch:
        await batch.commit(steps(ADD_NOTE(body="one"), ADD_NOTE(body="two")))
    engine = sessionmaker.kw["bind"]
    with recording_transactions(engine) as transactions, recording_checkouts(engine) as uses:
        [first, second] = await read_batch(sessionmaker, steps(ALL_NOTES(), ALL_NOTES()))
    assert [row[0] for row in first] == [row[0] for row in second] == ["one", "two"]
    if database_url.startswith("postgresql"):
        [use] = uses
        assert [sql.split()[0] for sql in use.executed] == ["SELECT", "SELECT"], use.executed
        assert [t.outcome for t in transactions] == ["commit"]  # SQLAlchemy's bookkeeping only
    for script in (steps(ADD_NOTE(body="refused")), steps(ALL_NOTES(), ADD_NOTE(body="refused"))):
        with recording_checkouts(engine) as uses, pytest.raises(WriteInReadBatch):
            await read_batch(sessionmaker, script)
        assert not any("INSERT" in sql for use in uses for sql in use.executed)
    async with write_batch(sessionmaker) as batch:
        await batch.commit(steps(ADD_NOTE(body="three")))
    assert await bodies(sessionmaker) == ["one", "two", "three"]
