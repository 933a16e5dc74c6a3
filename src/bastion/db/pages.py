# SPDX-License-Identifier: Apache-2.0
"""Reading a large result in bounded pages, each in its own short read transaction.

For work that walks everything of one kind (an account export): memory holds one page at a time,
and no transaction stays open while the caller sends what it read (on SQLite a long transaction
would hold up the purge and every writer waiting for a checkpoint).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from bastion.db.session import read_only

PAGE_SIZE = 200


async def keyset_pages(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Select[Any],
    order: tuple[InstrumentedAttribute[Any], InstrumentedAttribute[Any]],
    *,
    size: int = PAGE_SIZE,
) -> AsyncIterator[Sequence[Any]]:
    """The rows of ``statement`` (ORM entities) in ascending ``order``, ``size`` at a time.

    ``order`` is two columns whose pair is unique (e.g. created_at and id): each page starts after
    the last row of the previous one, so rows are neither skipped nor repeated while others are
    written, and every page costs one indexed range read however deep it is.
    """
    first, second = order
    after: tuple[Any, Any] | None = None
    while True:
        query = statement.order_by(first, second).limit(size)
        if after is not None:
            query = query.where(or_(first > after[0], and_(first == after[0], second > after[1])))
        async with read_only(sessionmaker) as session:
            rows = (await session.scalars(query)).all()
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = rows[-1]
        after = (getattr(last, first.key), getattr(last, second.key))
