# SPDX-License-Identifier: Apache-2.0
"""Records the database transactions an engine runs, with the statements of each, and (asyncpg)
the round trips each use of a pooled connection makes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Transaction:
    statements: list[str] = field(default_factory=list)
    outcome: str = "open"  # then "commit" or "rollback" (a read-only unit of work rolls back)

    def touches(self, table: str) -> bool:
        return any(f" {table} " in f" {statement} " for statement in self.statements)


@contextmanager
def recording_transactions(engine: AsyncEngine) -> Iterator[list[Transaction]]:
    """Every transaction begun on ``engine`` meanwhile, in order (background writers included:
    tell them apart by the tables they touch)."""
    seen: list[Transaction] = []
    current: dict[int, Transaction] = {}

    def begin(connection: Any) -> None:
        current[id(connection)] = transaction = Transaction()
        seen.append(transaction)

    def execute(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        transaction = current.get(id(connection))
        if transaction is not None:
            transaction.statements.append(" ".join(statement.split()))

    def end(outcome: str) -> Any:
        def listener(connection: Any) -> None:
            transaction = current.pop(id(connection), None)
            if transaction is not None:
                transaction.outcome = outcome

        return listener

    listeners = {
        "begin": begin,
        "before_cursor_execute": execute,
        "commit": end("commit"),
        "rollback": end("rollback"),
    }
    for name, listener in listeners.items():
        event.listen(engine.sync_engine, name, listener)
    try:
        yield seen
    finally:
        for name, listener in listeners.items():
            event.remove(engine.sync_engine, name, listener)


# What asyncpg's protocol sends: each call is one round trip to the server (``prepare`` once per
# connection and statement; ``query`` is a plain statement such as BEGIN or COMMIT).
_TRIPS = ("prepare", "bind_execute", "bind_execute_many", "bind", "execute", "query", "close_statement")


class _CountingProtocol:
    """asyncpg's protocol of one connection, noting each round trip in the checkout it serves."""

    def __init__(self, protocol: Any) -> None:
        self.wrapped = protocol
        self.checkout: list[tuple[str, str]] | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.wrapped, name)
        if name not in _TRIPS:
            return attribute

        def noted(*args: Any, **kwargs: Any) -> Any:
            if self.checkout is not None:
                self.checkout.append((name, _sql_of(name, args)))
            return attribute(*args, **kwargs)

        return noted


def _sql_of(call: str, args: tuple[Any, ...]) -> str:
    if call == "prepare":  # prepare(name, query, timeout, ...)
        text = args[1]
    elif call == "query":  # query(query, timeout)
        text = args[0]
    else:  # a prepared statement's state first
        text = getattr(args[0], "query", "")
    return " ".join(str(text).split())


@dataclass
class Checkout:
    """One use of a pooled connection: the round trips made on it, as (protocol call, SQL)."""

    trips: list[tuple[str, str]] = field(default_factory=list)

    def touches(self, table: str) -> bool:
        return any(f" {table} " in f" {sql} " for _, sql in self.trips)

    @property
    def executed(self) -> list[str]:
        """The round trips but preparing (once per connection and statement): BEGIN, each
        statement, COMMIT."""
        return [sql for call, sql in self.trips if call != "prepare"]


@contextmanager
def recording_checkouts(engine: AsyncEngine) -> Iterator[list[Checkout]]:
    """Every checkout of a connection of ``engine`` meanwhile, with its round trips (asyncpg only:
    on other drivers nothing is recorded)."""
    seen: list[Checkout] = []

    def checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = record.driver_connection
        protocol = getattr(driver, "_protocol", None)
        if protocol is None:
            return  # not asyncpg: nothing to count
        if not isinstance(protocol, _CountingProtocol):
            protocol = driver._protocol = _CountingProtocol(protocol)
        use = Checkout()
        seen.append(use)
        protocol.checkout = use.trips

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        driver = record.driver_connection
        protocol = getattr(driver, "_protocol", None)
        if isinstance(protocol, _CountingProtocol):
            protocol.checkout = None

    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)
