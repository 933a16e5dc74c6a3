# SPDX-License-Identifier: Apache-2.0
"""Chat request and response bodies. Unknown fields refused, sizes bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.chat.views import MessageView, SessionView

# A hard ceiling for parsing; the configured MAX_MESSAGE_LENGTH is enforced by the route.
MAX_CONTENT_CHARS = 1_000_000


class Strict(BaseModel):
    # Strict types: `"temperature": false` is not a number, whatever Python would coerce it to.
    model_config = ConfigDict(extra="forbid", strict=True)


class SessionCreate(Strict):
    title: str | None = Field(None, max_length=200)


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class SessionOut(BaseModel):
    id: str
    title: str | None
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    message_count: int
    usage: UsageOut

    @classmethod
    def of(cls, view: SessionView) -> SessionOut:
        return cls(
            id=view.id,
            title=view.title,
            created_at=view.created_at,
            last_active_at=view.last_active_at,
            expires_at=view.expires_at,
            message_count=view.message_count,
            usage=UsageOut(prompt_tokens=view.prompt_tokens, completion_tokens=view.completion_tokens),
        )


class SessionList(BaseModel):
    items: list[SessionOut]
    next: datetime | None = None


class MessageCreate(Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"content": "I slept badly again."}]}
    )

    # Some text besides whitespace (an empty message is refused; the schema says so too).
    content: str = Field(max_length=MAX_CONTENT_CHARS, pattern=r"\S")
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0, le=2)


class MessageOut(BaseModel):
    id: str
    session_id: str
    seq: int
    role: Literal["user", "assistant"]
    content: str
    status: str
    created_at: datetime
    provider: str | None = None
    model: str | None = None
    offline: bool = False
    usage: UsageOut | None = None

    @classmethod
    def of(cls, view: MessageView) -> MessageOut:
        usage = None
        if view.prompt_tokens is not None and view.completion_tokens is not None:
            usage = UsageOut(prompt_tokens=view.prompt_tokens, completion_tokens=view.completion_tokens)
        return cls(
            id=view.id,
            session_id=view.session_id,
            seq=view.seq,
            role="assistant" if view.role == "assistant" else "user",
            content=view.content,
            status=view.status,
            created_at=view.created_at,
            provider=view.provider,
            model=view.model,
            offline=view.offline,
            usage=usage,
        )


class MessagePage(BaseModel):
    items: list[MessageOut]
    next: int | None = None


class VoiceReply(BaseModel):
    transcript: str
    message: MessageOut
