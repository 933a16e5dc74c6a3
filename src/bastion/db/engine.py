# SPDX-License-Identifier: Apache-2.0
"""Async engine and session factory for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def backend_name(url: str) -> str:
    return make_url(url).get_backend_name()


def create_engine(url: str, *, echo: bool = False, timeout: float | None = None) -> AsyncEngine:
    """An engine for ``url``; SQLite gets its directory created and safe pragmas per connection.

    ``timeout`` (the app's DATABASE_TIMEOUT_SECONDS; None for migrations and the CLI, whose work
    may be long) bounds, on PostgreSQL, the wait for a pooled connection, a new connection and each
    statement (client side, so a paused server does not hold a request either), and sets the
    server's statement_timeout. The request then fails as an outage (503, ``bastion.db.errors``)
    and the connection is replaced; ``pool_pre_ping`` drops dead connections once the server is back.
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
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10, pool_recycle=1800)
    if timeout is not None and parsed.get_backend_name() == "postgresql":
        kwargs["pool_timeout"] = timeout
        if parsed.get_driver_name() == "asyncpg":
            kwargs["connect_args"] = {
                "timeout": timeout,
                "command_timeout": timeout,
                "server_settings": {"statement_timeout": str(int(timeout * 1000))},
            }
    return create_async_engine(parsed, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # Foreign keys are off in SQLite unless asked for; WAL lets readers work during writes.
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
