# SPDX-License-Identifier: Apache-2.0
"""The key check table: one value per DATABASE_ENCRYPTION_KEY key id, sealed under that key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db.base import Base
from bastion.db.types import UTCDateTime


class EncryptionKeyCheck(Base):
    """A fixed constant sealed under one key id, written the first time that key id is configured.

    At every start each stored value whose key id is configured must open with the configured key,
    so a different key under a known id is refused before it can make reads fail. The rows also
    list every key id ever used, so a key removed while data still needs it is noticed.
    """

    __tablename__ = "encryption_key_checks"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    check_value: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
