# SPDX-License-Identifier: Apache-2.0
"""SQLite's write-ahead log is copied into the database by a background job, not by a request's commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.db import migrate
from bastion.db.batch import Statement, steps, wal_checkpoint
from bastion.db.engine import SQLITE_WAL_BACKSTOP_PAGES, create_engine, create_sessionmaker
from bastion.db.session import read_batch, write_batch
from tests.conftest import SettingsFactory, serve_app

ROWS = Table("wal_rows", MetaData(), Column("id", Integer, primary_key=True), Column("body", Text))
ADD = Statement(insert(ROWS).values(body=bindparam("body")))
COUNT = Statement(select(ROWS.c.id))
PAGE = 4096


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(ROWS.metadata.create_all)
        yield engine
    finally:
        await engine.dispose()


async def add_rows(engine: AsyncEngine, count: int, size: int = PAGE) -> None:
    sessionmaker = create_sessionmaker(engine)
    for start in range(0, count, 100):
        async with write_batch(sessionmaker) as batch:
            await batch.commit(
                steps(ADD.many([{"body": "x" * size} for _ in range(min(100, count - start))]))
            )


def wal_pages(tmp_path: Path) -> int:
    return (tmp_path / "wal.db-wal").stat().st_size // PAGE


async def test_commits_leave_the_log_to_the_checkpoint_which_copies_all_of_it(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # More than SQLite's default threshold (1000 pages): no commit copied the log by itself.
    await add_rows(engine, 1500)
    assert 1500 < wal_pages(tmp_path) < SQLITE_WAL_BACKSTOP_PAGES
    busy, frames, copied = await wal_checkpoint(engine)
    assert busy == 0 and frames >= 1500 and copied == frames
    # The log is reused from its start afterwards instead of growing.
    size = wal_pages(tmp_path)
    await add_rows(engine, 200)
    assert wal_pages(tmp_path) == size
    [rows] = await read_batch(create_sessionmaker(engine), steps(COUNT()))
    assert len(rows) == 1700


async def test_writers_go_on_while_a_checkpoint_runs(engine: AsyncEngine) -> None:
    await add_rows(engine, 800)
    (busy, frames, copied), _ = await asyncio.gather(wal_checkpoint(engine), add_rows(engine, 300))
    assert busy == 0 and frames >= 800 and copied >= 800  # the writer did not make it wait or fail
    [rows] = await read_batch(create_sessionmaker(engine), steps(COUNT()))
    assert len(rows) == 1100


@pytest.mark.postgres
async def test_a_server_database_has_nothing_to_checkpoint(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        assert await wal_checkpoint(engine) == (0, 0, 0)
    finally:
        await engine.dispose()


async def test_the_served_app_checkpoints_in_the_background(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings) as (app, _http):
        [job] = [job for job in app.state.maintenance.jobs if job.name == "wal_checkpoint"]
        assert job.interval_seconds <= 1.0
        assert await app.state.maintenance.run_once(job) == 0  # nothing removed: nothing logged
