# SPDX-License-Identifier: Apache-2.0
"""What the chat service hands back: plain values, decrypted, never ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class SessionView:
    id: str
    title: str | None
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    message_count: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    session_id: str
    seq: int
    role: str
    content: str
    status: str
    created_at: datetime
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    offline: bool = False
    #: the guard's flag categories for a reply just produced (the Content-Warning); not stored
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class StreamEvent:
    """A piece of a streamed reply; the final event carries the stored message."""

    delta: str = ""
    message: MessageView | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[MessageView]
    next_before: int | None
