# SPDX-License-Identifier: Apache-2.0
"""A SQLite database with one table, its sessionmaker (a short busy timeout), and another writer."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.db.engine import create_engine, create_sessionmaker


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "bastion.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        setup.execute("INSERT INTO notes (body) VALUES ('first')")
    return path


@pytest.fixture
async def sessionmaker(database: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{database}", busy_timeout_ms=50)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def other_writer(database: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (another process, in real life) holding SQLite's write lock."""
    connection = sqlite3.connect(database, isolation_level=None, timeout=0.05)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    finally:
        connection.execute("ROLLBACK")
        connection.close()
