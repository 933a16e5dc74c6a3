# SPDX-License-Identifier: Apache-2.0
"""Journal request and response bodies. Unknown fields refused, sizes bounded."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from bastion.journal.service import MAX_TITLE_CHARS, EntrySummary, EntryView

# A hard ceiling for parsing; the configured MAX_JOURNAL_LENGTH is enforced by the service.
MAX_CONTENT_CHARS = 10_000_000


class EntryWrite(BaseModel):
    """An entry as written: its content and an optional title (PUT replaces both)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"title": "Tuesday", "content": "Walked by the river; calmer."}]},
    )

    title: str | None = Field(None, max_length=MAX_TITLE_CHARS, pattern=r"\S")
    content: str = Field(max_length=MAX_CONTENT_CHARS, pattern=r"\S")


class EntrySummaryOut(BaseModel):
    id: str
    title: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: EntrySummary) -> EntrySummaryOut:
        return cls(
            id=view.id,
            title=view.title,
            version=view.version,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


class EntryOut(EntrySummaryOut):
    content: str

    @classmethod
    def entry(cls, view: EntryView) -> EntryOut:
        return cls(**EntrySummaryOut.of(view).model_dump(), content=view.content)


class EntryList(BaseModel):
    """Newest first, without content; pass ``next`` as ``after`` for the following page."""

    items: list[EntrySummaryOut]
    next: str | None = None
