# SPDX-License-Identifier: Apache-2.0
"""The account export document and the erasure request (docs/privacy.md).

The export is streamed as it is read (``privacy/export.py`` writes it); these models describe it
in the OpenAPI document, they are never instantiated for an answer.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from bastion.api.schemas.api_keys import KeyOut
from bastion.api.schemas.audit import AuditRecordOut
from bastion.api.schemas.auth import Password, Strict


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EraseRequest(Strict):
    password: Password  # the account's password, checked like a login's


class ExportAccount(Closed):
    id: str
    email: str
    role: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class ExportKey(KeyOut):
    """A key's metadata as /api/keys lists it, and the address it was last used from."""

    model_config = ConfigDict(extra="forbid")

    last_used_ip: str | None


class ExportMessage(Closed):
    id: str
    seq: int
    role: str
    content: str
    status: str
    provider: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    created_at: datetime


class ExportChatSession(Closed):
    id: str
    api_key_id: str | None  # the key it was made with; null when the person made it
    title: str | None
    created_at: datetime
    last_active_at: datetime
    prompt_tokens: int
    completion_tokens: int
    messages: list[ExportMessage]


class ExportJournalEntry(Closed):
    id: str
    api_key_id: str | None
    title: str | None
    content: str
    version: int
    created_at: datetime
    updated_at: datetime


ExportAuditEvent = AuditRecordOut


class AccountExportDocument(Closed):
    format: str
    exported_at: datetime
    account: ExportAccount
    api_keys: list[ExportKey]
    chat_sessions: list[ExportChatSession]
    journal_entries: list[ExportJournalEntry]
    audit_events: list[ExportAuditEvent]
