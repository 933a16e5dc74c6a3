# SPDX-License-Identifier: Apache-2.0
"""Records the database transactions an engine runs, with the statements of each."""

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
