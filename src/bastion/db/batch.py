# SPDX-License-Identifier: Apache-2.0
"""Transactions whose statements reach SQLite's driver thread in one hand-off.

aiosqlite runs every call on its own thread: SQLAlchemy's adapter makes three or four hand-offs
per statement (cursor, execute, fetch, close), each one waking that thread and then the event
loop. On a hot path (a chat message: two transactions, five statements) the hand-offs cost
more CPU than the statements. A ``Script`` says what a transaction runs: a generator of steps
(``Step``: a statement built once and its parameters), each sent back its rows, so the next
step can depend on them; ``write_batch`` and ``read_batch`` (``bastion.db.session``) run scripts:

- on SQLite (aiosqlite), as one plain function on the driver's thread, on the raw ``sqlite3``
  connection: ``BEGIN IMMEDIATE`` (a write batch) or ``BEGIN`` (a read: deferred, so with WAL it
  never waits for a writer) in the first hand-off, ``COMMIT`` in the last, the statements
  compiled once per dialect with SQLAlchemy's own parameter and result processing, so what is
  stored and read back is what the ORM stores and reads. A failure rolls back on that thread;
  SQLite's errors come back wrapped as SQLAlchemy's, so overload and outages map as elsewhere.
  SQLAlchemy's statement events (and ``echo``) do not see these statements;
- elsewhere (PostgreSQL: asyncpg has no thread to hop to), statement by statement on the
  SQLAlchemy connection, in the transaction it began (a read on PostgreSQL: no transaction, each
  SELECT in autocommit).
  There each statement is a round trip to the server, and so are ``BEGIN`` and ``COMMIT``: a
  batch says so (``WriteBatch.remote``), so a script can send one statement that does what
  several would (PostgreSQL's data-modifying ``WITH``), and a transaction that is one statement
  is sent alone (``WriteBatch.alone``): in autocommit, where a statement is its own
  transaction, it is one round trip instead of three.

A read batch is one script in one transaction: on SQLite ``BEGIN``, its statements and ``COMMIT``
are a single hand-off.

A write batch of a few statements on a few rows (a chat message's two transactions) may run on the
event loop's own thread instead (``on_loop``): a hand-off wakes the driver's thread and then the
loop, about 60 µs of latency each way here, and the statements run on the other core, where the
objects they touch are not in its caches (a chat message's three hand-offs cost 0.2 ms more than
the same statements on the loop). It runs on the loop's own connection (``LoopConnection``, held
by the writer gate's holder): a plain ``sqlite3`` connection, so no pool checkout or return
either (with them a batch cost about 60 µs more than its statements; without, under 10 µs).
That is safe only while nothing can make SQLite wait: that connection's busy timeout is 0, so
``BEGIN IMMEDIATE`` takes the write lock or fails at once, and once the lock is held nothing in WAL
mode waits for another connection (readers never block a writer, and ``COMMIT`` takes no other
lock). When another process holds the lock, the batch goes to a pooled connection on the driver's
thread and waits there as any other, so the loop never sleeps on a lock. Long batches (the access
records' hundred rows) stay on the driver's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol, TypeVar, cast

import anyio
from sqlalchemy import exc as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.sql import ClauseElement, CompoundSelect, Executable, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

from bastion.db.engine import WRITE_INTENT, LoopConnection

T = TypeVar("T")
Rows = Sequence[Sequence[Any]]
_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement as SQLite's driver takes it: positional parameters, processed as SQLAlchemy does."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    binders: tuple[_Processor, ...]
    readers: tuple[_Processor, ...] | None  # None: every column comes back as stored
    # An INSERT of one row: its VALUES group, which ends the SQL ("(?, ?, ...)"); None otherwise.
    values_group: str | None = None
    # The parameters whose type processes the value (by position); the others bind as given.
    processing: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
    # Every parameter read in one C call, for a statement with several and no defaults (the many
    # rows of an INSERT); None: read one by one.
    read_all: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None

    def bound(self, given: Mapping[str, Any]) -> list[Any]:
        read = self.read_all
        if read is not None:
            parameters = list(read(given))
        else:
            parameters = [given[name] if name in given else self.defaults[name] for name in self.names]
        for at, binder in self.processing:
            parameters[at] = binder(parameters[at])
        return parameters

    def run_many(self, connection: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The statement for each of ``rows``. An INSERT goes as INSERTs of many rows each (as many
        as SQLite's limit on parameters allows): ``executemany`` lets go of the GIL and takes it
        back for every row, and with the event loop's thread busy each take waits for it (under
        load an access record cost about 28 µs of CPU that way, against under 10 µs)."""
        group = self.values_group
        if group is None or len(rows) < 2:
            connection.executemany(self.sql, [self.bound(row) for row in rows])
            return []
        head = self.sql[: len(self.sql) - len(group)]
        per = max(1, connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(self.names))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            connection.execute(
                head + ", ".join([group] * len(chunk)), [value for row in chunk for value in self.bound(row)]
            )
        return []

    def run(self, connection: sqlite3.Connection, given: Mapping[str, Any]) -> list[Any]:
        cursor = connection.execute(self.sql, self.bound(given))
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        readers = self.readers
        if readers is None:
            return rows
        return [
            tuple(value if read is None else read(value) for read, value in zip(readers, row, strict=True))
            for row in rows
        ]


class Statement:
    """A Core statement built once for scripts; compiled once per dialect for SQLite's path.
    ``reads``: a SELECT, the only statement a read batch runs."""

    __slots__ = ("_compiled", "clause", "reads")

    def __init__(self, clause: Executable) -> None:
        self.clause = clause
        self.reads = isinstance(clause, Select | CompoundSelect)
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def __call__(self, **parameters: Any) -> Step:
        return Step(self, parameters)

    def many(self, rows: Sequence[Mapping[str, Any]]) -> Step:
        """The statement once for each of ``rows`` (on SQLite's thread one call, an INSERT as
        statements of many rows each; the driver's batch on PostgreSQL); its rows are none."""
        return Step(self, {}, rows)

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _compile(self.clause, dialect)
        return found


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a script and its parameters (by bound-parameter name)."""

    statement: Statement
    parameters: Mapping[str, Any]
    many: Sequence[Mapping[str, Any]] | None = None  # one set of parameters per row


# What a transaction runs: each yielded ``Step`` is sent back its rows; the return value is the
# script's result. It must not await or touch the event loop: on SQLite it runs on the driver's thread.
Script = Generator[Step, Rows, T]


class WriteInReadBatch(ValueError):
    """A read batch was given a statement that is not a SELECT: refused before it is sent."""


def _readable(step: Step) -> None:
    if not step.statement.reads:
        raise WriteInReadBatch("a read batch runs SELECT statements only")


def steps(*each: Step) -> Script[list[Rows]]:
    """The script that runs ``each`` in order, whatever they return: the rows of each."""
    results: list[Rows] = []
    for step in each:
        results.append((yield step))
    return results


class WriteBatch(Protocol):
    """A write transaction that scripts run in (see ``bastion.db.session.write_batch``)."""

    # Whether each statement is a round trip to a server (PostgreSQL), rather than a call on
    # SQLite's driver thread within one hand-off: there, one statement doing the work of several
    # (a data-modifying WITH) saves a trip per statement it replaces.
    remote: bool

    async def run(self, script: Script[T]) -> T:
        """Run ``script`` in the transaction, which stays open."""

    async def commit(self, script: Script[T]) -> T:
        """Run ``script`` in the transaction, then commit it (one hand-off on SQLite)."""

    async def alone(self, step: Step) -> Rows:
        """Run ``step`` as the whole transaction, committed, and its rows: on PostgreSQL sent by
        itself in autocommit (a statement is its own transaction: no BEGIN, no COMMIT); on SQLite
        ``BEGIN IMMEDIATE``, the statement and ``COMMIT`` in one hand-off. Only as the batch's
        first work; nothing can follow it."""


def _compile(clause: Executable, dialect: Dialect) -> _Compiled:
    if not isinstance(clause, ClauseElement):
        raise TypeError(f"a batch statement is a Core statement: {clause!r}")
    compiled = clause.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or not compiled.positional or compiled.positiontup is None:
        raise TypeError(f"a batch statement needs positional parameters: {clause}")
    if compiled.literal_execute_params or compiled.post_compile_params or compiled.escaped_bind_names:
        raise TypeError(f"a batch statement's parameters must bind as they are: {clause}")
    names = tuple(compiled.positiontup)
    binds = [compiled.binds[name] for name in names]  # a name used twice is bound twice
    defaults = {
        name: bind.effective_value for name, bind in zip(names, binds, strict=True) if not bind.required
    }
    binders = tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds)
    columns = getattr(clause, "exported_columns", ())
    readers = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    sql = str(compiled)
    group = "(" + ", ".join(["?"] * len(names)) + ")"
    one_row = (
        compiled.isinsert and bool(names) and not compiled.returning and sql.endswith(" VALUES " + group)
    )
    return _Compiled(
        sql=sql,
        names=names,
        defaults=defaults,
        binders=binders,
        readers=readers if any(read is not None for read in readers) else None,
        values_group=group if one_row else None,
        processing=tuple((at, binder) for at, binder in enumerate(binders) if binder is not None),
        read_all=itemgetter(*names) if len(names) > 1 and not defaults else None,
    )


# -- SQLite: the whole hand-off on the driver's thread --------------------------------------------


async def on_driver_thread(driver: Any, function: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``function(sqlite3_connection)`` on aiosqlite's thread, as one hand-off.

    This is the one place that reaches into aiosqlite's private API (as SQLAlchemy's own adapter
    does): ``Connection._execute`` queues a function for its thread and ``Connection._conn`` is the
    ``sqlite3`` connection, which only that thread may use. aiosqlite is pinned in the lock files;
    tests/unit/db/test_batch.py fails loudly if a new version changes either.
    """
    result: T = await driver._execute(function, driver._conn)
    return result


def _checkpoint(connection: sqlite3.Connection) -> Any:
    return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


async def wal_checkpoint(engine: AsyncEngine) -> tuple[int, int, int]:
    """Copy what SQLite's write-ahead log holds into the database, on a pooled connection's thread.

    PASSIVE: it waits for no reader or writer and takes no write lock, so writers go on meanwhile;
    what a reader still needs stays in the log for the next run. Returns SQLite's answer (busy: 1
    when another process was checkpointing, frames in the log, frames copied); (0, -1, -1) when the
    database does not use a write-ahead log, and (0, 0, 0) for a server database.
    """
    if engine.dialect.name != "sqlite" or engine.dialect.driver != "aiosqlite":
        return (0, 0, 0)
    raw = await engine.raw_connection()
    try:
        row = await on_driver_thread(
            raw.driver_connection,
            lambda connection: connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone(),
        )
    finally:
        with anyio.CancelScope(shield=True):
            await greenlet_spawn(raw.close)
    busy, frames, copied = row
    return int(busy), int(frames), int(copied)


class _Abandoned(Exception):
    """The caller was cancelled while its hand-off waited or ran: nothing more of it is done."""


class _Caller:
    """Whether the caller of a hand-off is still there (set from the loop, read on the thread)."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False

    def check(self) -> None:
        if self.gone:
            raise _Abandoned


def _rollback_if_open(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.rollback()


def _wrapped(sql: str, error: sqlite3.Error, dialect: Dialect) -> sa.StatementError:
    """SQLite's error as SQLAlchemy's (``OperationalError`` for a locked database, as on
    SQLAlchemy's own path), so overload and outages map as elsewhere."""
    return sa.DBAPIError.instance(sql, None, error, sqlite3.Error, hide_parameters=True, dialect=dialect)


def _loop_lock(loop: LoopConnection, dialect: Dialect) -> sqlite3.Connection | None:
    """``BEGIN IMMEDIATE`` on the loop's own connection, whose busy timeout is 0: that connection
    with its transaction begun, or None (nothing begun) when another connection holds SQLite's
    write lock. A connection that fails otherwise is closed, to be opened afresh next time."""
    try:
        connection = loop.open()
        _rollback_if_open(connection)  # nothing should leave one open; if anything did, undone first
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:
        if (
            isinstance(error, sqlite3.OperationalError)
            and error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
        ):
            return None  # extended busy codes included
        loop.close()
        raise _wrapped("BEGIN IMMEDIATE", error, dialect) from error
    return connection


def _hand_off(
    script: Script[T] | None,
    dialect: Dialect,
    caller: _Caller,
    *,
    begin: str | None,
    commit: bool,
    reads_only: bool = False,
) -> Callable[[sqlite3.Connection], T | None]:
    """What the driver's thread runs: ``begin`` (``BEGIN IMMEDIATE`` or ``BEGIN``; first hand-off
    only), the script, COMMIT (last).
    On any error the transaction is rolled back there, and SQLite's error comes back wrapped as
    SQLAlchemy's (``OperationalError`` for a locked database, as on SQLAlchemy's own path). A
    caller cancelled meanwhile has the rest skipped and rolled back, unless COMMIT has begun."""

    def run(connection: sqlite3.Connection) -> T | None:
        sql = begin or ""
        try:
            caller.check()
            if begin is not None:
                connection.execute(begin)
            result: T | None = None
            if script is not None:
                try:
                    step = next(script)
                    while True:
                        caller.check()
                        if reads_only:
                            _readable(step)
                        compiled = step.statement.compiled(dialect)
                        sql = compiled.sql
                        if step.many is None:
                            step = script.send(compiled.run(connection, step.parameters))
                        else:
                            step = script.send(compiled.run_many(connection, step.many))
                except StopIteration as done:
                    result = done.value
            if commit:
                caller.check()
                sql = "COMMIT"
                connection.execute(sql)
            return result
        except BaseException as error:
            _rollback_if_open(connection)
            if isinstance(error, sqlite3.Error):
                raise _wrapped(sql, error, dialect) from error
            raise

    return run


class _SQLiteBatch:
    remote = False

    def __init__(
        self, connection: sqlite3.Connection, dialect: Dialect, *, write: bool, driver: Any = None
    ) -> None:
        """``driver``: aiosqlite's connection, whose thread runs each script on ``connection``
        (its ``sqlite3`` connection). None: the loop's own connection, its transaction begun
        (``_loop_lock``), whose scripts run here on the event loop's thread."""
        self._connection = connection
        self._driver = driver
        self._dialect = dialect
        self._begin = "BEGIN IMMEDIATE" if write else "BEGIN"
        self._reads_only = not write
        self.begun = driver is None
        self.over = False  # committed or rolled back
        self.disconnected = False

    async def run(self, script: Script[T]) -> T:
        return await self._run(script, commit=False)  # type: ignore[return-value]

    async def commit(self, script: Script[T]) -> T:
        return await self._run(script, commit=True)  # type: ignore[return-value]

    async def alone(self, step: Step) -> Rows:
        if self.begun:
            raise RuntimeError("a statement alone is its transaction's only work")
        [rows] = await self.commit(steps(step))
        return rows

    async def _run(self, script: Script[T] | None, *, commit: bool) -> T | None:
        if self.over:
            raise RuntimeError("the transaction is over")
        begin, self.begun = (None if self.begun else self._begin), True
        caller = _Caller()
        try:
            run = _hand_off(
                script, self._dialect, caller, begin=begin, commit=commit, reads_only=self._reads_only
            )
            if self._driver is None:
                result = run(self._connection)
            else:
                result = await on_driver_thread(self._driver, run)
        except Exception as error:
            self.over = True  # the hand-off rolled back
            if isinstance(error, sa.DBAPIError):
                self.disconnected = self._dialect.is_disconnect(cast(Any, error.orig), None, None)
            raise
        except BaseException:
            # Cancelled: the hand-off may still be queued or running. It stops at its next
            # statement; ``over`` stays False, so the transaction's exit rolls back what is open.
            caller.gone = True
            raise
        self.over = commit
        return result

    async def finish(self, error: BaseException | None) -> None:
        if self.over or not self.begun:
            return
        if error is None:
            await self._run(None, commit=True)
            return
        if self._driver is None:  # on the loop: nothing of it can still be running elsewhere
            self.over = True
            _rollback_if_open(self._connection)
            return
        # Queued behind the hand-off that may still be running: shielded, so a cancelled request
        # never returns its connection to the pool mid-transaction.
        with anyio.CancelScope(shield=True):
            self.over = True
            await on_driver_thread(self._driver, _rollback_if_open)


# -- elsewhere: statement by statement on SQLAlchemy's connection ---------------------------------


class _ConnectionBatch:
    """Statement by statement on ``connection``; the transaction begins with the first script
    (SQLAlchemy's, entered on ``stack``: committed when the batch ends, rolled back on any error);
    the driver sends ``BEGIN`` just before the first statement."""

    remote = True

    def __init__(
        self, connection: AsyncConnection, stack: AsyncExitStack, *, reads_only: bool = False
    ) -> None:
        self._connection = connection
        self._stack = stack
        self._reads_only = reads_only
        self._transaction: AsyncTransaction | None = None
        self._over = False  # committed, or a statement ran alone

    async def run(self, script: Script[T]) -> T:
        await self._begun()
        return await self._steps(script)

    async def commit(self, script: Script[T]) -> T:
        transaction = await self._begun()
        result = await self._steps(script)
        self._over = True
        await transaction.commit()
        return result

    async def alone(self, step: Step) -> Rows:
        if self._over or self._transaction is not None:
            raise RuntimeError("a statement alone is its transaction's only work")
        self._over = True
        # The driver begins no transaction in autocommit; the pool puts the connection's own
        # isolation level back when it is returned.
        await self._connection.execution_options(isolation_level="AUTOCOMMIT")
        [rows] = await self._steps(steps(step))
        await self._connection.commit()  # nothing to send: SQLAlchemy's bookkeeping only
        return rows

    async def _begun(self) -> AsyncTransaction:
        if self._over:
            raise RuntimeError("the transaction is over")
        if self._transaction is None:
            self._transaction = await self._stack.enter_async_context(self._connection.begin())
        return self._transaction

    async def _steps(self, script: Script[T]) -> T:
        return await _statements(self._connection, script, reads_only=self._reads_only)


class _AutocommitReads:
    """A read batch on PostgreSQL: each statement sent alone in autocommit, one round trip, with
    no ``BEGIN`` or ``COMMIT`` around it. At READ COMMITTED (PostgreSQL's default) a transaction
    gives its statements no common snapshot anyway: each sees what was committed when it began.
    Only SELECTs run (``WriteInReadBatch`` before anything else is sent)."""

    remote = True

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def run(self, script: Script[T]) -> T:
        return await _statements(self._connection, script, reads_only=True)

    async def commit(self, script: Script[T]) -> T:
        return await self.run(script)

    async def alone(self, step: Step) -> Rows:
        [rows] = await self.run(steps(step))
        return rows


async def _statements(connection: AsyncConnection, script: Script[T], *, reads_only: bool = False) -> T:
    """``script`` run statement by statement on ``connection``, each sent its rows."""
    try:
        step = next(script)
        while True:
            if reads_only:
                _readable(step)
            parameters = dict(step.parameters) if step.many is None else list(step.many)
            result = await connection.execute(step.statement.clause, parameters)
            step = script.send(result.all() if result.returns_rows else [])
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


@asynccontextmanager
async def begin_batch(
    engine: AsyncEngine, *, write: bool = True, loop: LoopConnection | None = None
) -> AsyncIterator[WriteBatch]:
    """A transaction on a connection of ``engine``: committed when the block ends (unless a script
    committed it), rolled back on any error or cancellation. ``write=False``: a batch that only
    reads (SELECTs only; SQLite's deferred ``BEGIN``; autocommit statements on PostgreSQL).
    ``loop``: the event loop's own connection to a SQLite file (``WriterGate.loop``, the caller
    holding the gate): a short write batch runs on it, on the loop's thread, while SQLite's write
    lock is free at once (see the module), else on a pooled connection's thread."""
    dialect = engine.dialect
    if dialect.name != "sqlite" or dialect.driver != "aiosqlite":
        async with engine.connect() as connection, AsyncExitStack() as stack:
            if not write and dialect.name == "postgresql":
                # The pool puts the connection's own isolation level back when it is returned.
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                yield _AutocommitReads(connection)
                await connection.commit()  # nothing to send: SQLAlchemy's bookkeeping only
                return
            # The intent reaches SQLite's begin hook before the transaction begins (``BEGIN
            # IMMEDIATE``; a server database has no such hook).
            if write and dialect.name == "sqlite":
                await connection.execution_options(**{WRITE_INTENT: True})
            yield _ConnectionBatch(connection, stack, reads_only=not write)
        return
    own = _loop_lock(loop, dialect) if loop is not None and write else None
    if loop is not None and own is not None:
        batch = _SQLiteBatch(own, dialect, write=True)
        try:
            async with _finished(batch):
                yield batch
        finally:
            loop.done(own, broken=batch.disconnected)
        return
    # The pool's connection itself: a SQLAlchemy Connection around it would only add bookkeeping
    # (half the cost of a transaction's checkout) to statements it never sees.
    try:
        raw = await engine.raw_connection()
    except sqlite3.Error as error:  # wrapped as SQLAlchemy's Connection would (an outage is a 503)
        raise sa.DBAPIError.instance(None, None, error, sqlite3.Error, dialect=dialect) from error
    driver: Any = raw.driver_connection
    batch = _SQLiteBatch(driver._conn, dialect, write=write, driver=driver)
    try:
        async with _finished(batch):
            yield batch
    finally:
        with anyio.CancelScope(shield=True):
            if batch.disconnected:
                raw.invalidate()
            # Back to the pool; its reset (``_sqlite_reset``) runs in SQLAlchemy's greenlet.
            await greenlet_spawn(raw.close)


@asynccontextmanager
async def _finished(batch: _SQLiteBatch) -> AsyncIterator[None]:
    """Commit ``batch`` when the block ends well, roll it back when it raises."""
    try:
        yield
        await batch.finish(None)
    except BaseException as error:
        await batch.finish(error)
        raise
