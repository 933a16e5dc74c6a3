# SPDX-License-Identifier: Apache-2.0
"""Batches on SQLite: each script one hand-off to aiosqlite's thread, the transaction whole or not at
all (errors and cancellation included), stored values as SQLAlchemy stores them, overload a 503; a
read batch is one hand-off in all (deferred BEGIN, its statements, COMMIT) and never waits for a
writer. Short write batches on the event loop's thread (``on_loop``) keep every one of those
promises and never wait on the loop: a lock held elsewhere is waited for on the driver's thread."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, insert, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.schema import CreateTable

from bastion.db import batch as batches
from bastion.db.batch import Rows, Script, Statement, Step, on_driver_thread, steps
from bastion.db.engine import WRITER_GATE, LoopConnection, create_engine, create_sessionmaker
from bastion.db.errors import database_busy, unavailable
from bastion.db.session import read_batch, read_only, unit_of_work, write_batch
from bastion.db.types import UTCDateTime
from bastion.errors import ServiceUnavailable

NOTES = Table("notes", MetaData(), Column("id", Integer, primary_key=True), Column("body", Text))
STAMPS = Table(
    "stamps",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("hits", Integer, nullable=False),
)
ADD_NOTE = Statement(insert(NOTES).values(body=bindparam("body")))
ALL_NOTES = Statement(select(NOTES.c.body).order_by(NOTES.c.id))
ADD_STAMP = Statement(insert(STAMPS).values(at=bindparam("at"), hits=41))
STAMPS_SINCE = Statement(select(STAMPS.c.at, STAMPS.c.hits).where(STAMPS.c.at >= bindparam("since")))
#: write batches run on the driver's thread, and on the event loop's (``on_loop``)
ON_LOOP = pytest.mark.parametrize("on_loop", [False, True], ids=["driver-thread", "on-loop"])


async def bodies(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    async with read_only(sessionmaker) as session:
        return list((await session.execute(text("SELECT body FROM notes ORDER BY id"))).scalars())


async def join_new_threads(before: set[threading.Thread]) -> None:
    """Wait for the threads started since ``before``: aiosqlite stops a connection that failed to
    open with a hand-off that completes a future on the loop, which must not outlive the test's."""
    for thread in set(threading.enumerate()) - before:
        await asyncio.to_thread(thread.join, 5)


def lock_is_free(database: Path) -> bool:
    """Whether another connection can take SQLite's write lock right now."""
    other = sqlite3.connect(database, isolation_level=None, timeout=0.05)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


async def test_aiosqlite_still_runs_a_function_on_its_thread_with_the_sqlite3_connection(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The batch reaches aiosqlite's private ``Connection._execute`` and ``_conn``
    (``bastion.db.batch.on_driver_thread``): a new aiosqlite that changes them fails here."""
    engine: AsyncEngine = sessionmaker.kw["bind"]
    raw = await engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert isinstance(driver, aiosqlite.Connection), type(driver)
        seen: list[tuple[int, object]] = []

        def where(connection: sqlite3.Connection) -> str:
            seen.append((threading.get_ident(), connection))
            return "ran"

        assert await on_driver_thread(driver, where) == "ran"
        [(thread, sqlite_connection)] = seen
        assert thread != threading.get_ident() and thread == driver._thread.ident
        assert isinstance(sqlite_connection, sqlite3.Connection)
    finally:
        raw.close()


@ON_LOOP
async def test_a_script_holds_the_write_lock_from_its_first_hand_off_and_commits_whole(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path, on_loop: bool
) -> None:
    async with write_batch(sessionmaker, on_loop=on_loop) as batch:
        before = await batch.run(steps(ALL_NOTES(), ADD_NOTE(body="second")))
        assert before == [[("first",)], []]
        assert not lock_is_free(database)
        [after] = await batch.commit(steps(ALL_NOTES()))
        assert after == [("first",), ("second",)]
        assert lock_is_free(database)
    # A block that ends without a script's commit commits too.
    async with write_batch(sessionmaker, on_loop=on_loop) as batch:
        await batch.run(steps(ADD_NOTE(body="third")))
    assert await bodies(sessionmaker) == ["first", "second", "third"]
    assert lock_is_free(database)


@ON_LOOP
async def test_a_script_sees_the_rows_of_its_previous_step(
    sessionmaker: async_sessionmaker[AsyncSession], on_loop: bool
) -> None:
    def copy_last() -> Script[str | None]:
        rows: Rows = yield ALL_NOTES()
        if not rows:
            return None
        body = f"{rows[-1][0]} again"
        yield ADD_NOTE(body=body)
        return body

    async with write_batch(sessionmaker, on_loop=on_loop) as batch:
        assert await batch.commit(copy_last()) == "first again"
    assert await bodies(sessionmaker) == ["first", "first again"]


async def test_values_are_stored_and_read_back_as_sqlalchemy_stores_and_reads_them(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    with sqlite3.connect(database) as setup:
        setup.execute(str(CreateTable(STAMPS).compile(dialect=sessionmaker.kw["bind"].dialect)))
    at = datetime(2026, 12, 5, 7, 30, 1, 250_000, tzinfo=timezone(timedelta(hours=2)))
    async with unit_of_work(sessionmaker) as session:  # SQLAlchemy's own path
        await session.execute(insert(STAMPS).values(at=at, hits=1))
    async with write_batch(sessionmaker) as batch:
        await batch.commit(steps(ADD_STAMP(at=at)))
        # Parameters with defaults (the literal 41) bind as given; results come back processed.
    async with write_batch(sessionmaker) as batch:
        [rows] = await batch.run(steps(STAMPS_SINCE(since=at - timedelta(seconds=1))))
    assert rows == [(at, 1), (at, 41)] and all(row[0].tzinfo == UTC for row in rows)
    with sqlite3.connect(database) as raw:
        stored = raw.execute("SELECT at FROM stamps ORDER BY id").fetchall()
    assert stored[0] == stored[1] == ("2026-12-05 05:30:01.250000",)
    async with read_only(sessionmaker) as session:
        assert (await session.execute(select(STAMPS.c.at))).scalars().all() == [at, at]


@ON_LOOP
async def test_an_error_in_a_script_rolls_back_everything_before_it(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path, on_loop: bool
) -> None:
    def failing() -> Script[None]:
        yield ADD_NOTE(body="lost")
        raise ValueError("refused")

    async with write_batch(sessionmaker, on_loop=on_loop) as batch:
        await batch.run(steps(ADD_NOTE(body="also lost")))
        with pytest.raises(ValueError, match="refused"):
            await batch.run(failing())
        with pytest.raises(RuntimeError, match="over"):
            await batch.run(steps(ADD_NOTE(body="too late")))
    assert await bodies(sessionmaker) == ["first"]
    assert lock_is_free(database)


@ON_LOOP
async def test_an_error_between_hand_offs_rolls_back(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path, on_loop: bool
) -> None:
    with pytest.raises(ValueError, match="refused"):
        async with write_batch(sessionmaker, on_loop=on_loop) as batch:
            await batch.run(steps(ADD_NOTE(body="rolled back")))
            raise ValueError("refused")  # the admission said no
    assert await bodies(sessionmaker) == ["first"]
    assert lock_is_free(database)


async def cancelled_mid_hand_off(run: Callable[[Script[Any]], Awaitable[Any]], step: Step) -> None:
    """``run`` a script of two ``step``s and cancel its caller while the driver's thread is between
    them; the thread finishes its hand-off only after the cancellation."""
    started, release = threading.Event(), threading.Event()

    def slow() -> Script[Rows]:
        yield step
        started.set()
        release.wait(5)  # the driver's thread is still working when the request goes away
        rows: Rows = yield step
        return rows

    task = asyncio.create_task(run(slow()))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_request_cancelled_during_a_hand_off_leaves_nothing_open(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    """The hand-off runs on after its caller is cancelled; the rollback is queued behind it."""

    async def message(script: Script[Rows]) -> None:
        async with write_batch(sessionmaker) as batch:
            await batch.commit(script)

    await cancelled_mid_hand_off(message, ADD_NOTE(body="cancelled"))
    assert lock_is_free(database)
    assert await bodies(sessionmaker) == ["first"]
    # The connection went back to the pool clean: the next batch on it works.
    async with write_batch(sessionmaker) as batch:
        await batch.commit(steps(ADD_NOTE(body="next")))
    assert await bodies(sessionmaker) == ["first", "next"]


@ON_LOOP
async def test_a_request_cancelled_between_hand_offs_rolls_back(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path, on_loop: bool
) -> None:
    holding = asyncio.Event()

    async def message() -> None:
        async with write_batch(sessionmaker, on_loop=on_loop) as batch:
            await batch.run(steps(ADD_NOTE(body="cancelled")))
            holding.set()
            await asyncio.sleep(5)  # the admission's round trip, when the client goes away

    task = asyncio.create_task(message())
    await holding.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lock_is_free(database)
    assert await bodies(sessionmaker) == ["first"]


@ON_LOOP
async def test_a_lock_wait_past_the_busy_timeout_is_service_unavailable(
    sessionmaker: async_sessionmaker[AsyncSession], other_writer: sqlite3.Connection, on_loop: bool
) -> None:
    with pytest.raises(ServiceUnavailable) as refused:
        async with write_batch(sessionmaker, on_loop=on_loop) as batch:
            await batch.commit(steps(ADD_NOTE(body="late")))
    assert refused.value.status_code == 503
    assert refused.value.headers["Retry-After"] == str(refused.value.retry_after)
    cause = refused.value.__cause__
    assert isinstance(cause, OperationalError) and isinstance(cause.orig, sqlite3.OperationalError)


@ON_LOOP
async def test_other_sqlite_errors_stay_what_they_are(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path, on_loop: bool
) -> None:
    missing = Statement(select(text("1")).select_from(Table("missing", MetaData(), Column("id", Integer))))
    with pytest.raises(OperationalError, match="no such table") as failed:
        async with write_batch(sessionmaker, on_loop=on_loop) as batch:
            await batch.run(steps(ADD_NOTE(body="rolled back"), missing()))
    assert not database_busy(failed.value) and unavailable(failed.value) is None
    assert await bodies(sessionmaker) == ["first"]
    assert lock_is_free(database)


def test_statements_whose_parameters_sqlalchemy_rewrites_are_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    expanding = Statement(select(NOTES.c.id).where(NOTES.c.body.in_(bindparam("bodies", expanding=True))))
    with pytest.raises(TypeError, match="bind as they are"):
        expanding.compiled(sessionmaker.kw["bind"].dialect)


@ON_LOOP
async def test_a_database_that_cannot_be_opened_is_an_outage(tmp_path: Path, on_loop: bool) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'bastion.db'}")
    shutil.rmtree(tmp_path / "gone")  # the volume went away before the first connection
    threads = set(threading.enumerate())
    try:
        with pytest.raises(OperationalError, match="unable to open") as failed:
            async with write_batch(create_sessionmaker(engine), on_loop=on_loop) as batch:
                await batch.commit(steps(ADD_NOTE(body="lost")))
        refusal = unavailable(failed.value)
        assert refusal is not None and refusal.status_code == 503
    finally:
        await engine.dispose()
        await join_new_threads(threads)


# -- read batches ----------------------------------------------------------------------------------


async def test_a_read_script_is_one_hand_off_and_leaves_no_transaction_open(
    sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    hand_offs: list[object] = []

    async def counted(driver: object, function: object) -> object:
        hand_offs.append(function)
        return await on_driver_thread(driver, function)  # type: ignore[arg-type]

    monkeypatch.setattr(batches, "on_driver_thread", counted)

    def two_reads() -> Script[list[str]]:
        first: Rows = yield ALL_NOTES()
        second: Rows = yield ALL_NOTES()
        return [row[0] for row in (*first, *second)]

    assert await read_batch(sessionmaker, two_reads()) == ["first", "first"]
    assert len(hand_offs) == 1
    # Nothing left open: a write on another connection goes through, and the next read sees it.
    async with write_batch(sessionmaker) as batch:
        await batch.commit(steps(ADD_NOTE(body="second")))
    assert await read_batch(sessionmaker, steps(ALL_NOTES())) == [[("first",), ("second",)]]


async def test_a_read_batch_does_not_wait_for_a_writer(
    sessionmaker: async_sessionmaker[AsyncSession], other_writer: sqlite3.Connection
) -> None:
    """WAL: another process holding the write lock (past the 50 ms busy timeout here) does not hold
    up a read, which sees what was committed before it."""
    other_writer.execute("INSERT INTO notes (body) VALUES ('uncommitted')")
    await asyncio.sleep(0.1)
    assert await read_batch(sessionmaker, steps(ALL_NOTES())) == [[("first",)]]


async def test_an_error_in_a_read_script_rolls_back_and_the_connection_is_reused_clean(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    def failing() -> Script[None]:
        yield ALL_NOTES()
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await read_batch(sessionmaker, failing())
    # Had its snapshot stayed open, the next read on the pooled connection would not see this.
    with sqlite3.connect(database) as other:
        other.execute("INSERT INTO notes (body) VALUES ('later')")
    assert await read_batch(sessionmaker, steps(ALL_NOTES())) == [[("first",), ("later",)]]
    assert lock_is_free(database)


async def test_a_read_cancelled_during_its_hand_off_leaves_nothing_open(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    await cancelled_mid_hand_off(lambda script: read_batch(sessionmaker, script), ALL_NOTES())
    with sqlite3.connect(database) as other:
        other.execute("INSERT INTO notes (body) VALUES ('later')")
    # The connection went back to the pool with no snapshot held: the next read sees the write.
    assert await read_batch(sessionmaker, steps(ALL_NOTES())) == [[("first",), ("later",)]]
    assert lock_is_free(database)


async def test_a_database_that_cannot_be_opened_for_a_read_is_an_outage(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'bastion.db'}")
    shutil.rmtree(tmp_path / "gone")
    threads = set(threading.enumerate())
    try:
        with pytest.raises(OperationalError, match="unable to open") as failed:
            await read_batch(create_sessionmaker(engine), steps(ALL_NOTES()))
        refusal = unavailable(failed.value)
        assert refusal is not None and refusal.status_code == 503
    finally:
        await engine.dispose()
        await join_new_threads(threads)


# -- write batches on the event loop's thread ----------------------------------------------------


def adding(body: str, threads: list[int]) -> Script[Rows]:
    """Add a note and read them all, noting the thread each step ran on."""
    threads.append(threading.get_ident())
    yield ADD_NOTE(body=body)
    threads.append(threading.get_ident())
    rows: Rows = yield ALL_NOTES()
    return rows


def _busy_timeout(connection: sqlite3.Connection) -> Any:
    return connection.execute("PRAGMA busy_timeout").fetchone()


async def busy_timeouts(engine: AsyncEngine) -> set[int]:
    """The busy timeout of every connection the pool holds now (checked out one by one)."""
    pool = engine.sync_engine.pool
    raws = [await engine.raw_connection() for _ in range(pool.checkedin())]
    try:
        return {(await on_driver_thread(raw.driver_connection, _busy_timeout))[0] for raw in raws}
    finally:
        for raw in raws:
            raw.close()


PATIENCE_MS = 600_000


@pytest.fixture
async def patient(database: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A second process's view of the database: its own pool and writer gate, and a busy timeout
    longer than the suite's per-test timeout, so a wait for the lock on the loop fails the test."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}", busy_timeout_ms=PATIENCE_MS)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_a_short_write_batch_runs_on_the_loops_thread_and_commits_whole(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    threads: list[int] = []
    pool = sessionmaker.kw["bind"].sync_engine.pool
    async with write_batch(sessionmaker, on_loop=True) as batch:
        rows = await batch.run(adding("second", threads))
        assert rows == [("first",), ("second",)]
        assert not lock_is_free(database)  # held from the first script to the end of the block
        assert pool.checkedout() == 0  # the loop's own connection, not the pool's
        await batch.run(adding("third", threads))
    assert set(threads) == {threading.get_ident()}
    assert lock_is_free(database)
    assert await bodies(sessionmaker) == ["first", "second", "third"]
    # The pool's connections keep the busy timeout the engine set (50 ms); the loop's waits for none.
    assert await busy_timeouts(sessionmaker.kw["bind"]) == {50}
    assert _busy_timeout(loop_connection(sessionmaker).open()) == (0,)


def loop_connection(sessionmaker: async_sessionmaker[AsyncSession]) -> LoopConnection:
    loop = sessionmaker.kw["info"][WRITER_GATE].loop
    assert isinstance(loop, LoopConnection)
    return loop


async def test_the_loops_connection_is_closed_with_the_engine_even_mid_batch(database: Path) -> None:
    """Disposing of the engine closes the loop's connection; one in a batch then is closed when the
    batch ends (it commits first), and the next batch opens a new one."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}", busy_timeout_ms=50)
    sessionmaker = create_sessionmaker(engine)
    loop = loop_connection(sessionmaker)
    async with write_batch(sessionmaker, on_loop=True) as batch:
        await batch.run(steps(ADD_NOTE(body="second")))
        first = loop.open()
        await engine.dispose()
        await batch.run(steps(ADD_NOTE(body="third")))  # the batch still holds it
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        first.execute("SELECT 1")
    async with write_batch(sessionmaker, on_loop=True) as batch:
        await batch.run(steps(ADD_NOTE(body="fourth")))
    second = loop.open()
    assert second is not first
    await engine.dispose()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        second.execute("SELECT 1")
    assert [body for (body,) in sqlite3.connect(database).execute("SELECT body FROM notes")] == [
        "first",
        "second",
        "third",
        "fourth",
    ]


async def test_a_loop_connection_that_broke_is_replaced_and_its_batch_rolled_back(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path
) -> None:
    """A SQLite error that is not "busy" when the lock is taken closes the loop's connection (here
    a handle closed under it): the batch fails with SQLite's error wrapped as SQLAlchemy's, and
    the next one opens a new connection."""
    loop = loop_connection(sessionmaker)
    broken = loop.open()
    broken.close()  # as if the handle had gone bad
    with pytest.raises(DBAPIError, match="closed") as failed:
        async with write_batch(sessionmaker, on_loop=True) as batch:
            await batch.commit(steps(ADD_NOTE(body="lost")))
    assert isinstance(failed.value.orig, sqlite3.ProgrammingError)
    async with write_batch(sessionmaker, on_loop=True) as batch:
        await batch.commit(steps(ADD_NOTE(body="kept")))
    assert loop.open() is not broken
    assert await bodies(sessionmaker) == ["first", "kept"]
    assert lock_is_free(database)


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite:///:memory:", "sqlite+aiosqlite:///file:{}?uri=true"],
    ids=["memory", "uri"],
)
async def test_a_database_the_loop_could_not_open_as_the_same_one_has_no_loop_connection(
    url: str, tmp_path: Path
) -> None:
    """Another connection to ``:memory:`` is another database, and a URI's options may name what a
    plain path does not: there a short write batch stays on the driver's thread, as whole."""
    engine = create_engine(url.format(tmp_path / "uri.db"))
    try:
        sessionmaker = create_sessionmaker(engine)
        assert sessionmaker.kw["info"][WRITER_GATE].loop is None
        async with engine.begin() as connection:
            await connection.execute(CreateTable(NOTES))
        threads: list[int] = []
        async with write_batch(sessionmaker, on_loop=True) as batch:
            assert await batch.commit(adding("only", threads)) == [("only",)]
        assert threads and threading.get_ident() not in threads
    finally:
        await engine.dispose()


async def test_a_lock_held_elsewhere_is_waited_for_on_the_drivers_thread_while_the_loop_serves(
    sessionmaker: async_sessionmaker[AsyncSession],
    patient: async_sessionmaker[AsyncSession],
    database: Path,
) -> None:
    """Two writers in one loop, as two processes: the first holds the lock across an await (a
    message's admission); the second must not wait for it on the loop, or the first could never
    commit. It waits on its driver's thread and writes once the first is done."""
    first_holds, let_go = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with write_batch(sessionmaker, on_loop=True) as batch:
            await batch.run(steps(ADD_NOTE(body="one")))
            first_holds.set()
            await let_go.wait()

    threads: list[int] = []

    async def second() -> Rows:
        async with write_batch(patient, on_loop=True) as batch:
            return await batch.commit(adding("two", threads))

    holder = asyncio.create_task(first())
    await first_holds.wait()
    waiter = asyncio.create_task(second())
    ticks = 0
    for _ in range(20):  # the loop goes on while the second writer waits
        await asyncio.sleep(0.01)
        ticks += 1
    assert not waiter.done()
    let_go.set()
    await holder
    assert await asyncio.wait_for(waiter, 5) == [("first",), ("one",), ("two",)]
    assert ticks == 20
    assert threads and threading.get_ident() not in threads  # it ran on the driver's thread
    assert lock_is_free(database)
    # It waited on a pooled connection, with the busy timeout the engine set.
    assert await busy_timeouts(patient.kw["bind"]) == {PATIENCE_MS}


def _traced(connection: sqlite3.Connection, statements: list[str], limit: int | None) -> str:
    if limit is not None:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    connection.set_trace_callback(statements.append)
    return "traced"


def _untraced(connection: sqlite3.Connection) -> None:
    connection.set_trace_callback(None)
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)


@pytest.mark.parametrize("limit", [None, 5], ids=["default-limit", "five-parameters"])
async def test_many_rows_are_inserted_by_statements_of_many_rows_each(
    sessionmaker: async_sessionmaker[AsyncSession], database: Path, limit: int | None
) -> None:
    """``executemany`` lets go of the GIL and takes it back for every row: with the event loop's
    thread busy, a hundred access records took a hundred waits for it. An INSERT of many rows goes
    as INSERTs of as many rows as SQLite's parameter limit allows, values and order kept."""
    with sqlite3.connect(database) as setup:
        setup.execute(str(CreateTable(STAMPS).compile(dialect=sessionmaker.kw["bind"].dialect)))
    at = datetime(2026, 12, 6, 4, 0, 0, 125_000, tzinfo=UTC)
    rows = [{"at": at + timedelta(seconds=n)} for n in range(12)]
    engine: AsyncEngine = sessionmaker.kw["bind"]
    raw = await engine.raw_connection()
    statements: list[str] = []
    try:
        # The pool holds one connection here: the batch below runs on the one being traced.
        await on_driver_thread(raw.driver_connection, lambda c: _traced(c, statements, limit))
    finally:
        raw.close()
    async with write_batch(sessionmaker) as batch:
        await batch.commit(steps(ADD_STAMP.many(rows)))
    raw = await engine.raw_connection()
    try:
        await on_driver_thread(raw.driver_connection, _untraced)
    finally:
        raw.close()
    inserts = [sql for sql in statements if sql.startswith("INSERT")]
    # Two parameters a row (the literal 41 binds too): 12 rows in one statement, or 2 per statement.
    assert len(inserts) == (1 if limit is None else 6), inserts
    async with write_batch(sessionmaker) as batch:
        [stored] = await batch.run(steps(STAMPS_SINCE(since=at)))
    assert stored == [(row["at"], 41) for row in rows]


async def test_many_of_a_statement_that_is_not_an_insert_of_values_is_an_executemany(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    rename = Statement(NOTES.update().where(NOTES.c.body == bindparam("old")).values(body=bindparam("new")))
    assert rename.compiled(sessionmaker.kw["bind"].dialect).values_group is None
    async with write_batch(sessionmaker) as batch:
        await batch.run(steps(ADD_NOTE.many([{"body": "second"}, {"body": "third"}])))
        await batch.commit(
            steps(rename.many([{"old": "first", "new": "one"}, {"old": "third", "new": "three"}]))
        )
    assert await bodies(sessionmaker) == ["one", "second", "three"]
