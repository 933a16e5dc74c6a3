# SPDX-License-Identifier: Apache-2.0
"""The journal table. Titles and content are stored only as ciphertext bound to their row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.crypto.randomness import new_id
from bastion.db.base import Base
from bastion.db.types import UTCDateTime, utcnow


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (
        Index("ix_journal_entries_owner_user", "owner_user_id", "created_at"),
        Index("ix_journal_entries_owner_key", "owner_api_key_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    owner_api_key_id: Mapped[str | None] = mapped_column(String(32))
    title_ciphertext: Mapped[str | None] = mapped_column(Text)
    content_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    # Incremented by every update: clients send it back (If-Match) so an edit made on a stale copy
    # is refused instead of silently overwriting a newer one.
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
