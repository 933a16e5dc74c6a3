# SPDX-License-Identifier: Apache-2.0
"""Who a stored conversation or journal entry belongs to, and the SQL that keeps it theirs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, bindparam, or_
from sqlalchemy.orm import InstrumentedAttribute

from bastion.auth.principal import Principal

OwnerColumn = InstrumentedAttribute[Any] | ColumnElement[Any]
#: the bound parameter ``Owner.bound_clause`` names
OWNER_PARAMETER = "owner_id"


def _owned(
    user_column: OwnerColumn, key_column: OwnerColumn, *, by_key: bool, owner_id: Any
) -> ColumnElement[bool]:
    if by_key:
        return cast(ColumnElement[bool], key_column == owner_id)
    return and_(user_column == owner_id, key_column.is_(None))


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

    def clause_for(self, user_column: OwnerColumn, key_column: OwnerColumn) -> ColumnElement[bool]:
        """The condition that a row with these owner columns is this owner's."""
        if self.api_key_id is not None:
            return _owned(user_column, key_column, by_key=True, owner_id=self.api_key_id)
        if self.user_id is None:  # pragma: no cover - authentication always yields one of the two
            raise ValueError("an owner needs a user or an API key")
        return _owned(user_column, key_column, by_key=False, owner_id=self.user_id)

    @property
    def by_key(self) -> bool:
        """Whether the rows are the key's (else the user's): which ``bound_clause`` applies."""
        return self.api_key_id is not None

    @property
    def bound_id(self) -> dict[str, str]:
        """The parameter of ``bound_clause`` for this owner."""
        owner_id = self.api_key_id if self.api_key_id is not None else self.user_id
        if owner_id is None:  # pragma: no cover - authentication always yields one of the two
            raise ValueError("an owner needs a user or an API key")
        return {OWNER_PARAMETER: owner_id}

    @staticmethod
    def bound_clause(
        user_column: OwnerColumn, key_column: OwnerColumn, *, by_key: bool
    ) -> ColumnElement[bool]:
        """``clause_for`` with the owner's id a bound parameter (``bound_id``), for a statement built
        once and run for every owner of the kind ``by_key`` names."""
        return _owned(user_column, key_column, by_key=by_key, owner_id=bindparam(OWNER_PARAMETER))


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
