# SPDX-License-Identifier: Apache-2.0
"""Request and response shapes of /api/keys. The secret appears only in ``KeyCreated``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.api.schemas.types import Instant

ScopeName = Literal["chat", "journal", "voice", "completions", "profile", "monitoring", "admin"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    scopes: list[ScopeName] = Field(min_length=1, max_length=7)
    role: Literal["user", "service"] = "user"
    expires_at: Instant | None = Field(None, strict=False)  # RFC 3339 text, parsed (see Instant)
    messages_per_hour: int | None = Field(None, ge=1, le=1_000_000)
    user_id: str | None = Field(None, pattern=r"^[0-9a-f]{1,32}$")  # admins: a key for another user


class KeyOut(BaseModel):
    id: str
    name: str
    user_id: str
    role: str
    scopes: list[str]
    messages_per_hour: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    previous_valid_until: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str


class KeyList(BaseModel):
    items: list[KeyOut]
