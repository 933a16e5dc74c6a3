# SPDX-License-Identifier: Apache-2.0
"""Chat tables. Titles and message text are stored only as ciphertext bound to their row."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bastion.crypto.randomness import new_id
from bastion.db.base import Base
from bastion.db.types import UTCDateTime, utcnow


def new_session_id() -> str:
    """144 random bits: a session id cannot be guessed or enumerated."""
    return secrets.token_urlsafe(18)


class MessageStatus(StrEnum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"  # the stream was cut; what arrived is kept
    WITHHELD = "withheld"  # the reply leaked (canary, prompt, secret); a replacement is stored


class ChatSession(Base):
    __tablename__ = "chat_sessions"
    __table_args__ = (
        Index("ix_chat_sessions_owner_user", "owner_user_id", "last_active_at"),
        Index("ix_chat_sessions_owner_key", "owner_api_key_id", "last_active_at"),
        Index("ix_chat_sessions_last_active_at", "last_active_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_session_id)
    owner_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    owner_api_key_id: Mapped[str | None] = mapped_column(String(32))
    title_ciphertext: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    last_active_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    # Incremented atomically per message: the next message's sequence number.
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("session_id", "seq", name="uq_chat_messages_session_seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("chat_sessions.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=MessageStatus.COMPLETE)
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


@dataclass(slots=True)
class NewMessage:
    """A message about to be stored: the columns of ``chat_messages`` as plain values. A chat
    message's path builds two and stores them with Core statements, so it needs none of the ORM's
    bookkeeping (an ORM object costs several times more to build). ``seq`` is 0 until the message's
    place is taken (places start at 1)."""

    id: str
    session_id: str
    role: str
    content_ciphertext: str
    status: str
    provider: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime
    seq: int = 0
