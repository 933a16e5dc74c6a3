# SPDX-License-Identifier: Apache-2.0
"""Identity tables: users, sessions (refresh-token families), refresh and reset tokens, signing keys.

Tokens are stored only as keyed hashes (HMAC-SHA256 with a server secret): a copy of the database
does not yield a usable token.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bastion.crypto.randomness import new_id
from bastion.db.base import Base
from bastion.db.types import UTCDateTime, utcnow


class User(Base):
    """An account. The e-mail address is sealed (``crypto/registry.py`` USER_EMAIL) and found by its
    blind index, so a copy of the database holds no address in the clear."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    email_index: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # Bumped by password change, disable, role change and logout-all: every token carrying an
    # older version is refused from the next request on.
    token_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class AuthSession(Base):
    """One login: the family every rotated refresh token of that login belongs to."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)  # absolute lifetime
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_session_id", "session_id"),
        Index("ix_refresh_tokens_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(String(32), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PasswordResetToken(Base):
    __tablename__ = "password_reset_tokens"
    __table_args__ = (Index("ix_password_reset_tokens_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Invitation(Base):
    """An administrator's invitation to register (REGISTRATION=invite); single use, expiring.

    Only a keyed hash of the invitation code is stored. The address, when set (sealed), is the only
    one the invitation registers.
    """

    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    email_ciphertext: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_by: Mapped[str | None] = mapped_column(String(32))


class SigningKey(Base):
    """JWT signing keys and their ages.

    Keys from JWT_PRIVATE_KEYS / SECRET_KEY are recorded here with no private material (only the
    time Bastion first saw them); keys made by ``bastion keys rotate-signing`` carry their private
    half encrypted with DATABASE_ENCRYPTION_KEY (AES-256-GCM). The newest key signs; an older key
    verifies until ``verify_until``, set when a rotation superseded it (rows from before that column
    existed: JWT_KEY_GRACE_DAYS after the next newer key appeared).
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16), nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    private_ciphertext: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    verify_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """A managed API key, presented as ``bst_<id>_<secret>``.

    Only HMAC-SHA256(API_KEY_SALT, full key) is stored. Rotation keeps the id (so rate limits,
    quotas, usage counters and the chat sessions a key owns carry over) and moves the old hash to
    ``previous_secret_hash``, which verifies until ``previous_valid_until``.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    name_ciphertext: Mapped[str] = mapped_column(Text, nullable=False)  # sealed: names can name people
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    scopes: Mapped[str] = mapped_column(String(200), nullable=False)  # space-separated scope names
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64))
    previous_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    messages_per_hour: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_ip_ciphertext: Mapped[str | None] = mapped_column(Text)
