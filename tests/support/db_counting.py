# SPDX-License-Identifier: Apache-2.0
"""Counts the database transactions an engine begins (one per unit of work or read)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def recording_transactions(engine: AsyncEngine) -> Iterator[list[str]]:
    """What ``engine`` did meanwhile, in order: "begin", "commit" and "rollback" (a read-only
    unit of work ends with a rollback)."""
    seen: list[str] = []
    listeners = {name: (lambda _c, name=name: seen.append(name)) for name in ("begin", "commit", "rollback")}
    for name, listener in listeners.items():
        event.listen(engine.sync_engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in listeners.items():
            event.remove(engine.sync_engine, name, listener)
