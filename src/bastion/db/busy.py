# SPDX-License-Identifier: Apache-2.0
"""Recognising a database that is busy (overloaded) rather than broken."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bastion.errors import ServiceUnavailable

# Long enough for a burst of writers to drain; a lock wait already lasted the busy timeout.
BUSY_RETRY_AFTER_SECONDS = 2

# SQLite's messages for SQLITE_BUSY and SQLITE_LOCKED (the lock wait outran the busy timeout).
_BUSY_MESSAGES = ("database is locked", "database is busy", "database table is locked")


def database_busy(exc: BaseException) -> bool:
    """Whether ``exc`` means "too busy right now, try again" (a 503), not a fault (a 500)."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        text = str(exc.orig).lower()
        return any(message in text for message in _BUSY_MESSAGES)
    return False


def busy_unavailable() -> ServiceUnavailable:
    """The 503 (with Retry-After) a busy database answers with."""
    return ServiceUnavailable("The database is busy; try again shortly", retry_after=BUSY_RETRY_AFTER_SECONDS)
