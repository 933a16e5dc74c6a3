# SPDX-License-Identifier: Apache-2.0
"""The database cannot answer (down, paused, or too busy): which exceptions mean so, and the 503 for it.

A stopped, paused, restarting or saturated database is an outage, not a bug: the client gets
``ServiceUnavailable`` (503 with Retry-After and the error shape) instead of a 500, and the pool
recovers on its own when the server returns (dead connections are replaced: ``bastion.db.engine``). The
engine's timeouts (``bastion.db.engine``) bound how long a request waits for a paused server, and
a unit of work that fails this way is rolled back by its session, so nothing is half-written.

``unavailable(exc)`` is consulted by the unhandled-error layer
(``bastion.web.errors.UnhandledErrors``), which every request passes through, and by the streams
that have already answered 200 (``bastion.api.streams``), which say it in their last event.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa

from bastion.errors import ServiceUnavailable

RETRY_AFTER_SECONDS = 2.0
MESSAGE = "The database is temporarily unavailable"
# Bounded walk down __cause__/__context__/orig: wrappers never nest deeper than a few levels.
_MAX_DEPTH = 8


def _driver_errors() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - asyncpg ships with the PostgreSQL extra
        return ()
    errors = asyncpg.exceptions
    return (
        errors.PostgresConnectionError,  # connection failures, including ConnectionDoesNotExistError
        errors.CannotConnectNowError,  # the server is starting up or shutting down
        errors.TooManyConnectionsError,
        errors.AdminShutdownError,
        errors.QueryCanceledError,  # statement_timeout: the server is overloaded
        errors.InterfaceError,  # the connection was closed under the operation
    )


_DRIVER_ERRORS = _driver_errors()
# Raised bare by the driver (connect refused, socket reset, command_timeout on a paused server).
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


# SQLite reports faults (a missing table, a constraint) and unavailability alike as
# OperationalError; only these mean "cannot answer now" rather than "Bastion or its schema is wrong".
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database is busy",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
)


def _sqlite_fault(error: BaseException) -> bool:
    orig = error.orig if isinstance(error, sa.DBAPIError) else error
    if not isinstance(orig, sqlite3.Error):
        return False
    text = str(orig).lower()
    return not any(message in text for message in _SQLITE_UNAVAILABLE)


def _is_outage(error: BaseException) -> bool:
    if isinstance(error, sa.DBAPIError) and error.connection_invalidated:
        return True
    if _sqlite_fault(error):
        return False
    return isinstance(
        error, (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, *_NETWORK_ERRORS, *_DRIVER_ERRORS)
    )


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """``ServiceUnavailable`` when ``exc`` (or what it wraps) means the database cannot answer."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending and len(seen) < _MAX_DEPTH:
        error = pending.pop()
        if error is None or any(error is known for known in seen):
            continue
        seen.append(error)
        if _is_outage(error):
            return ServiceUnavailable(MESSAGE, retry_after=RETRY_AFTER_SECONDS)
        orig = error.orig if isinstance(error, sa.DBAPIError) else None
        pending.extend(
            (error.__context__, error.__cause__, orig if isinstance(orig, BaseException) else None)
        )
    return None


# SQLite's messages for SQLITE_BUSY and SQLITE_LOCKED (the lock wait outran the busy timeout).
_BUSY_MESSAGES = ("database is locked", "database is busy", "database table is locked")
BUSY_MESSAGE = "The database is busy; try again shortly"


def database_busy(exc: BaseException) -> bool:
    """Whether ``exc`` means "too busy right now, try again" (overload, not a fault)."""
    if isinstance(exc, sa.TimeoutError):
        return True
    if isinstance(exc, sa.DBAPIError):
        text = str(exc.orig).lower()
        return any(message in text for message in _BUSY_MESSAGES)
    return False


def busy_unavailable() -> ServiceUnavailable:
    """The 503 (with Retry-After) a busy database answers with."""
    return ServiceUnavailable(BUSY_MESSAGE, retry_after=RETRY_AFTER_SECONDS)
