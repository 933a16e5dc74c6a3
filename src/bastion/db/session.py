# SPDX-License-Identifier: Apache-2.0
"""Units of work: one transaction that commits whole or not at all.

``unit_of_work`` is for transactions that write: on SQLite it takes the write lock when it begins
(``BEGIN IMMEDIATE``), so it never fails half-way on a lock upgrade; ``write_batch`` is the same
transaction for scripts of Core statements, on a hot path (a chat message) that needs no ORM
session around them (``bastion.db.batch``). ``read_only`` is for
transactions that only read: on SQLite with WAL they never wait for a writer; ``read_batch`` is
one such transaction running one script, for hot reads (chat listings and history). Keep all short and
never await anything slow (the model, password hashing, the network) inside them: on SQLite an
open write transaction holds up every other writer.

A database too busy to answer (SQLite's lock wait outran the busy timeout, or the connection pool
stayed exhausted) becomes ``ServiceUnavailable``: a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import anyio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bastion.db.batch import Script, WriteBatch, begin_batch
from bastion.db.engine import WRITE_INTENT, WRITER_GATE, WriterGate
from bastion.db.errors import busy_unavailable, database_busy

T = TypeVar("T")


@asynccontextmanager
async def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Yield a session inside a write transaction: committed on success, rolled back on any error."""
    async with _transaction(sessionmaker, write=True) as session:
        yield session


@asynccontextmanager
async def read_only(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Yield a session inside a transaction that only reads (it never takes SQLite's write lock)."""
    async with _transaction(sessionmaker, write=False) as session:
        yield session


@asynccontextmanager
async def write_batch(
    sessionmaker: async_sessionmaker[AsyncSession], *, on_loop: bool = False
) -> AsyncIterator[WriteBatch]:
    """A write transaction for scripts of Core statements (``bastion.db.batch``), for a hot path (a
    chat message) that needs no ORM session: committed when the block ends, or by a script's
    ``commit``; rolled back on any error or cancellation. On SQLite each script is one hand-off to
    the driver's thread; ``on_loop`` (a few statements on a few rows) runs them on the event loop's
    thread while SQLite's write lock is free at once."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    gate = _writer_gate(sessionmaker)
    loop = gate.loop if on_loop and gate is not None else None
    with _busy_unavailable():
        async with _turn(gate), begin_batch(engine, loop=loop) as batch:
            yield batch


async def read_batch(sessionmaker: async_sessionmaker[AsyncSession], script: Script[T]) -> T:
    """Run ``script`` (``bastion.db.batch``), SELECTs only (anything else is refused before it is
    sent), and its result: on SQLite ``BEGIN`` (deferred), the statements and ``COMMIT`` are one
    hand-off to the driver's thread; on PostgreSQL each SELECT is sent alone in autocommit, one
    round trip (at READ COMMITTED a transaction gives its statements no common snapshot anyway).
    A database too busy to answer is the 503, as for ``read_only``."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    with _busy_unavailable():
        async with begin_batch(engine, write=False) as batch:
            return await batch.commit(script)


@asynccontextmanager
async def _transaction(
    sessionmaker: async_sessionmaker[AsyncSession], *, write: bool
) -> AsyncIterator[AsyncSession]:
    with _busy_unavailable():
        gate = _writer_gate(sessionmaker) if write else None
        async with _turn(gate), sessionmaker() as session, session.begin():
            # The first connection of the transaction carries the intent to the engine's begin hook.
            await session.connection(execution_options={WRITE_INTENT: write})
            yield session


def _writer_gate(sessionmaker: async_sessionmaker[AsyncSession]) -> WriterGate | None:
    gate: WriterGate | None = sessionmaker.kw.get("info", {}).get(WRITER_GATE)
    return gate


@contextmanager
def _busy_unavailable() -> Iterator[None]:
    """A database too busy to answer becomes the 503; any other error goes on as it is."""
    try:
        yield
    except Exception as exc:
        if database_busy(exc):
            raise busy_unavailable() from exc
        raise


@asynccontextmanager
async def _turn(gate: WriterGate | None) -> AsyncIterator[None]:
    """Wait for this process's turn to write on SQLite (nothing to wait for elsewhere)."""
    if gate is None:
        yield
        return
    if gate.lock.locked():
        try:
            with anyio.fail_after(gate.timeout):
                await gate.lock.acquire()
        except TimeoutError:
            raise busy_unavailable() from None
    else:
        await gate.lock.acquire()  # free: taken at once, no wait to bound (nor its cancel scope)
    try:
        yield
    finally:
        gate.lock.release()
