# SPDX-License-Identifier: Apache-2.0
"""Declarative base with a naming convention, so migrations name constraints the same everywhere."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def load_models() -> None:
    """Import every module that defines tables, so ``Base.metadata`` knows them all."""
    import bastion.alerts.models
    import bastion.audit.models
    import bastion.auth.models
    import bastion.chat.models
    import bastion.crypto.models
    import bastion.journal.models
    import bastion.rotation.models  # noqa: F401
