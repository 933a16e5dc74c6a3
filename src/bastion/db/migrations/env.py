# SPDX-License-Identifier: Apache-2.0
"""Alembic environment: runs migrations over the async engine Bastion uses."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from bastion.db.base import Base, load_models
from bastion.db.engine import create_engine

load_models()
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite migrations run without foreign keys enforced (see ``create_engine``): verify after."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")


async def _run_online() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "", foreign_keys=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.run_sync(_check_foreign_keys)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
