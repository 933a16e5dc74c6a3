# SPDX-License-Identifier: Apache-2.0
"""The key check table: one value per DATABASE_ENCRYPTION_KEY key id, sealed under that key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
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


class ContentSigningKey(Base):
    """Ed25519 keys that sign model replies (``X-Content-Signature``), shared by every instance.

    Separate from the JWT ``signing_keys`` on purpose: a content key never signs or verifies a
    token (its key id reads ``content-...``). The private half is sealed with the field cipher
    (``crypto/registry.py`` CONTENT_SIGNING_KEY) and erased once its grace is over; the public half
    is kept in the clear, so verifying from the database needs no DATABASE_ENCRYPTION_KEY.
    ``generation`` is unique: two instances creating the first key at once, or two rotations at
    once, collide instead of both signing.
    """

    __tablename__ = "content_signing_keys"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    public_key: Mapped[str] = mapped_column(String(64), nullable=False)  # raw 32 bytes, base64url
    private_ciphertext: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    verify_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
