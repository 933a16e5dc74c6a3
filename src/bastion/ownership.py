# SPDX-License-Identifier: Apache-2.0
"""Who a stored conversation or journal entry belongs to, and the SQL that keeps it theirs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from bastion.auth.principal import Principal


@dataclass(frozen=True, slots=True)
class Owner:
    """The owner of a chat session or a journal entry.

    What is made with an API key belongs to that key alone (an app's conversations and entries
    stay the app's); what a signed-in person makes belongs to that person, seen with a token or
    cookie and not through any of their keys.
    """

    user_id: str | None
    api_key_id: str | None

    @classmethod
    def of(cls, principal: Principal) -> Owner:
        return cls(user_id=principal.user_id, api_key_id=principal.api_key_id)

    @property
    def identity(self) -> str:
        """The quota and budget identity: the key for key-owned rows, else the user."""
        return f"key:{self.api_key_id}" if self.api_key_id is not None else f"user:{self.user_id}"

    def clause_for(
        self, user_column: InstrumentedAttribute[Any], key_column: InstrumentedAttribute[Any]
    ) -> ColumnElement[bool]:
        """The condition that a row with these owner columns is this owner's."""
        if self.api_key_id is not None:
            return key_column == self.api_key_id
        if self.user_id is None:  # pragma: no cover - authentication always yields one of the two
            raise ValueError("an owner needs a user or an API key")
        return and_(user_column == self.user_id, key_column.is_(None))


def of_account(
    user_id: str,
    key_ids: Collection[str],
    user_column: InstrumentedAttribute[Any],
    key_column: InstrumentedAttribute[Any],
) -> ColumnElement[bool]:
    """Everything an account holds: what the person made and what any of their keys made.

    Key-owned rows carry ``owner_user_id`` too; the key ids are named as well so that a row is
    never left behind by an owner column a feature forgot to fill.
    """
    if not key_ids:
        return user_column == user_id
    return or_(user_column == user_id, key_column.in_(list(key_ids)))
