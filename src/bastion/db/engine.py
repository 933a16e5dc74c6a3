# SPDX-License-Identifier: Apache-2.0
"""Async engine and session factory for SQLite (default) and PostgreSQL.

SQLite allows one writer at a time. A transaction that starts with a plain (deferred) ``BEGIN``,
reads, and then writes must upgrade its lock; when another connection wrote in between, SQLite
answers "database is locked" at once, without waiting out the busy timeout. Write units of work
therefore start with ``BEGIN IMMEDIATE`` (see ``bastion.db.session``): they take the write lock up
front, and a second writer waits instead of failing. Reads keep the deferred ``BEGIN``; with WAL
they never wait for writers.

SQLite's busy handler waits by polling, which is not fair: under load one writer can lose the race
again and again until its busy timeout runs out. So within a process, writers also queue on one
lock (``WriterGate``), first come first served, and only the writer at the head of the queue asks
SQLite for its lock; the busy timeout is left for other processes (the CLI, more workers).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolResetState

# How long a SQLite writer waits for the write lock before giving up (then: 503 + Retry-After).
# Write transactions hold the lock for milliseconds, so this only runs out under an overload.
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Pages the write-ahead log may reach before the connection whose commit crosses it copies the log
#: into the database itself, fsync included (SQLite's default is 1000 pages, a few hundred chat
#: messages: that commit took ~4 ms more). A backstop only: the serving process checkpoints in the
#: background every SQLITE_CHECKPOINT_SECONDS (``bastion.db.batch.wal_checkpoint``), off any request.
SQLITE_WAL_BACKSTOP_PAGES = 10_000
SQLITE_CHECKPOINT_SECONDS = 1.0
# Execution option a unit of work sets on its connection to begin with the write lock held.
WRITE_INTENT = "bastion_write"
# Where a SQLite sessionmaker keeps its WriterGate (``sessionmaker.kw["info"]``).
WRITER_GATE = "bastion_writer_gate"
# A pooled server connection idle this long is pinged before it is handed out (``_ping_if_idle``).
IDLE_PING_SECONDS = 10.0
_RETURNED_AT = "bastion_returned_at"


class LoopConnection:
    """The event loop's own connection to a SQLite database file, for short write batches
    (``bastion.db.batch``, ``on_loop``): a plain ``sqlite3`` connection, no pool checkout and no
    driver thread. Only the writer holding the gate uses it, so one serves the process. Its busy
    timeout is 0: a write lock held by another process is never waited for on the loop (the batch
    goes to a pooled connection's thread instead). Opened on first use with the engine's pragmas,
    closed when the engine is disposed (or once its batch ends, if one is running then)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._retired: sqlite3.Connection | None = None

    def open(self) -> sqlite3.Connection:
        if self._connection is None:
            # Not bound to one thread: the app may be run from another (a test client's portal);
            # the writer gate is what keeps its users one at a time.
            connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                _sqlite_connect(connection, busy_timeout_ms=0)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def close(self) -> None:
        """Close the connection; one in a transaction is closed when that batch ends (``done``)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            if _in_transaction(connection):
                self._retired = connection
            else:
                connection.close()

    def done(self, connection: sqlite3.Connection, *, broken: bool) -> None:
        """A batch on ``connection`` has ended: close it if it broke or was closed meanwhile."""
        if broken and connection is self._connection:
            self.close()
        if connection is self._retired:
            self._retired = None
            connection.close()


def _in_transaction(connection: sqlite3.Connection) -> bool:
    try:
        return connection.in_transaction
    except sqlite3.ProgrammingError:  # closed already
        return False


@dataclass(frozen=True, slots=True)
class WriterGate:
    """This process's SQLite writers, one at a time in arrival order; ``timeout`` bounds the wait.
    ``loop``: the event loop's own connection to the database file, for the writer holding the
    gate (None for an in-memory database or a URI, where another connection is another database)."""

    timeout: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loop: LoopConnection | None = None


def backend_name(url: str) -> str:
    return make_url(url).get_backend_name()


def create_engine(
    url: str,
    *,
    echo: bool = False,
    timeout: float | None = None,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    foreign_keys: bool = True,
) -> AsyncEngine:
    """An engine for ``url``; SQLite gets its directory created, safe pragmas per connection, a busy
    timeout and writers that take the lock up front (``BEGIN IMMEDIATE``).

    ``timeout`` (the app's DATABASE_TIMEOUT_SECONDS; None for migrations and the CLI, whose work
    may be long) bounds, on PostgreSQL, the wait for a pooled connection, a new connection and each
    statement (client side, so a paused server does not hold a request either), and sets the
    server's statement_timeout. The request then fails as an outage (503, ``bastion.db.errors``)
    and the connection is replaced. A pooled connection idle for IDLE_PING_SECONDS is pinged
    before use (``_ping_if_idle``), so one the server or a network box dropped meanwhile is
    replaced unseen; a failed ping replaces every older connection too (a restarted server).

    ``foreign_keys=False`` is for migrations only: SQLite rebuilds a table to alter it, and dropping
    the old copy with foreign keys enforced would cascade into every table that refers to it.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Created owner-only before SQLite opens it; its -wal and -shm files inherit the mode.
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        # The pool's reset is ``_sqlite_reset``: a rollback only where a transaction is open.
        engine = create_async_engine(parsed, pool_reset_on_return=None, **kwargs)

        def connect(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_connect(dbapi_connection, busy_timeout_ms=busy_timeout_ms, foreign_keys=foreign_keys)

        event.listen(engine.sync_engine, "connect", connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
        return engine
    kwargs.update(pool_size=10, max_overflow=10, pool_recycle=1800)
    if timeout is not None and parsed.get_backend_name() == "postgresql":
        kwargs["pool_timeout"] = timeout
        if parsed.get_driver_name() == "asyncpg":
            kwargs["connect_args"] = {
                "timeout": timeout,
                "command_timeout": timeout,
                "server_settings": {"statement_timeout": str(int(timeout * 1000))},
            }
    engine = create_async_engine(parsed, **kwargs)
    _ping_if_idle(engine.sync_engine.pool, engine.dialect)
    return engine


def _ping_if_idle(pool: Any, dialect: Dialect) -> None:
    """Ping a pooled connection before handing it out when it sat idle for IDLE_PING_SECONDS.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: on asyncpg that is a transaction
    around an empty statement, three round trips before each of a request's transactions. A
    connection returned moments ago is as alive as the server, and were the server gone, the
    statement would fail as the ping would (a 503, and SQLAlchemy replaces the pool's
    connections on that disconnect). What a ping is for is the connection that sat idle while the
    server restarted, or while a firewall, NAT or PgBouncer dropped it: that one is checked first.
    """

    def returned(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < IDLE_PING_SECONDS:
            return  # just connected, or in use moments ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # Raised from checkout, this makes the pool connect anew (and drop every connection
            # older than this one: a server that dropped one has most likely dropped them all).
            raise InvalidatePoolError(f"idle connection failed its ping ({type(exc).__name__})") from exc

    event.listen(pool, "checkin", returned)
    event.listen(pool, "checkout", checkout)


def _sqlite_connect(dbapi_connection: Any, *, busy_timeout_ms: int, foreign_keys: bool = True) -> None:
    # The driver's own transaction handling would BEGIN (deferred) behind our back; turn it off
    # so ``_sqlite_begin`` alone decides how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Foreign keys are off in SQLite unless asked for; WAL lets readers work during writes.
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_BACKSTOP_PAGES}")
    finally:
        cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    if connection.get_execution_options().get(WRITE_INTENT):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def _sqlite_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """Roll back a connection going back to the pool when it still has a transaction open.

    The pool's default rolls back on every return: one more trip to the driver's thread after each
    committed transaction. The driver opens no transaction by itself (``_sqlite_connect``), so an
    open one, left by an error, is all there is to undo; SQLite says whether there is one.
    """
    if state.transaction_was_reset or not state.asyncio_safe:
        return  # rolled back already; or collected outside the event loop, where nothing can run
    if getattr(dbapi_connection, "driver_connection", dbapi_connection).in_transaction:
        dbapi_connection.rollback()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    info: dict[str, object] = {}
    if engine.dialect.name == "sqlite":
        loop = _loop_connection(engine)
        info[WRITER_GATE] = WriterGate(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, loop=loop)
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, info=info)


def _loop_connection(engine: AsyncEngine) -> LoopConnection | None:
    """The loop's own connection to ``engine``'s database, closed with the engine; None but for a
    plain file path on aiosqlite (a URI or options could name something a plain path does not)."""
    url = engine.url
    if url.get_driver_name() != "aiosqlite" or url.query or not url.database:
        return None
    if url.database == ":memory:" or url.database.startswith("file:"):
        return None
    loop = LoopConnection(url.database)
    event.listen(engine.sync_engine, "engine_disposed", lambda _engine: loop.close())
    return loop
