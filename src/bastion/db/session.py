# SPDX-License-Identifier: Apache-2.0
"""Unit of work: one transaction that commits whole or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@asynccontextmanager
async def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Yield a session inside a transaction: committed on success, rolled back on any error."""
    async with sessionmaker() as session, session.begin():
        yield session
