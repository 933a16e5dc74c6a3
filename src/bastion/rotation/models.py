# SPDX-License-Identifier: Apache-2.0
"""The ``secret_versions`` table: every value SESSION_SECRET, CSRF_SECRET and API_KEY_SALT have had.

A value from the settings is recorded the first time Bastion sees it, with no material (its id is
a fingerprint): that is how its age is known. A value made by ``bastion secrets rotate`` is stored
sealed under DATABASE_ENCRYPTION_KEY (the field cipher, bound to this table, column and row), so
every instance reads the same current value. A rotation sets ``verify_until`` on every older
version: the previous one keeps verifying until then, the current one has none.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.base import Base
from bastion.db.types import UTCDateTime


class SecretVersion(Base):
    __tablename__ = "secret_versions"
    __table_args__ = (Index("ix_secret_versions_name", "name", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)  # settings | rotated
    sealed_value: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    verify_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
