# SPDX-License-Identifier: Apache-2.0
"""Everything an account holds, as one JSON document written as it is read.

The document (``docs/privacy.md``)::

    {"format": "bastion-export/1", "exported_at": ..., "account": {...},
     "api_keys": [...], "chat_sessions": [{..., "messages": [...]}], "journal_entries": [...],
     "audit_events": [...]}

Sealed values are opened (titles, messages, journal text, key names, the address a key was last
used from); secrets, hashes and ciphertexts never appear. Rows are read in keyset pages of
``page_size``, each in its own short read transaction, and written out before the next page is
read: memory holds one page whatever the size of the account.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bastion.audit.models import AuditRecord
from bastion.audit.repository import AuditRepository
from bastion.audit.sinks import document
from bastion.auth.api_key_repository import ApiKeyRepository
from bastion.auth.api_key_service import KeyView
from bastion.auth.models import ApiKey, User
from bastion.auth.service import IdentityService
from bastion.chat.models import ChatMessage, ChatSession
from bastion.chat.repository import ChatRepository
from bastion.crypto.registry import (
    API_KEY_LAST_IP,
    CHAT_MESSAGE_CONTENT,
    CHAT_SESSION_TITLE,
    JOURNAL_CONTENT,
    JOURNAL_TITLE,
    SealedField,
)
from bastion.db.pages import PAGE_SIZE, keyset_pages
from bastion.db.session import read_only
from bastion.db.types import utcnow
from bastion.journal.models import JournalEntry
from bastion.journal.repository import JournalRepository

FORMAT = "bastion-export/1"
# Stored columns exported as they are (sealed ones are opened by name; hashes are never listed).
MESSAGE_COLUMNS = (
    "id",
    "seq",
    "role",
    "status",
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
)


def _plain(row: object, columns: tuple[str, ...]) -> dict[str, Any]:
    return {column: getattr(row, column) for column in columns}


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default)


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not part of an export")


class AccountExport:
    """Builds the export of one account from the identity service's store and cipher."""

    def __init__(
        self, *, identity: IdentityService, page_size: int = PAGE_SIZE, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.identity = identity
        self.sessionmaker = identity.sessionmaker
        self.cipher = identity.cipher
        self.page_size = page_size
        self.clock = clock

    async def document(self, user_id: str) -> AsyncIterator[bytes]:
        """The export of ``user_id``, in pieces; ``NotFound`` (before any piece) without an account."""
        user = await self.identity.me(user_id)
        async with read_only(self.sessionmaker) as session:
            key_ids = list(await ApiKeyRepository(session).ids_of(user_id))
        return self._pieces(user, key_ids)

    async def _pieces(self, user: User, key_ids: list[str]) -> AsyncIterator[bytes]:
        head = {"format": FORMAT, "exported_at": self.clock(), "account": self._account(user)}
        yield _encode(head)[:-1].encode()  # the object stays open for the lists that follow
        sections: list[tuple[str, AsyncIterator[dict[str, Any]]]] = [
            ("api_keys", self._keys(user.id)),
            ("chat_sessions", self._chats(user.id, key_ids)),
            ("journal_entries", self._journal(user.id, key_ids)),
            ("audit_events", self._audit([user.id, *key_ids])),
        ]
        for name, items in sections:
            yield f",{_encode(name)}:[".encode()
            first = True
            async for item in items:
                yield (("" if first else ",") + _encode(item)).encode()
                first = False
            yield b"]"
        yield b"}"

    def _pages(self, statement: Any, order: Any) -> AsyncIterator[Any]:
        return keyset_pages(self.sessionmaker, statement, order, size=self.page_size)

    def _account(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "email": self.identity.email_of(user),
            "role": user.role,
            "is_active": user.is_active,
            "created_at": user.created_at,
            "updated_at": user.updated_at,
        }

    async def _keys(self, user_id: str) -> AsyncIterator[dict[str, Any]]:
        statement = select(ApiKey).where(ApiKey.user_id == user_id)
        async for page in self._pages(statement, (ApiKey.created_at, ApiKey.id)):
            for key in page:
                item = asdict(KeyView.of(key, self.cipher))  # the view never carries a secret or hash
                item["scopes"] = list(item["scopes"])
                item["last_used_ip"] = (
                    API_KEY_LAST_IP.open(self.cipher, key.last_used_ip_ciphertext, key.id)
                    if key.last_used_ip_ciphertext
                    else None
                )
                yield item

    async def _chats(self, user_id: str, key_ids: list[str]) -> AsyncIterator[dict[str, Any]]:
        statement = select(ChatSession).where(ChatRepository.of_account(user_id, key_ids))
        async for page in self._pages(statement, (ChatSession.created_at, ChatSession.id)):
            for chat in page:
                messages = [message async for message in self._messages(chat.id)]
                yield {
                    "id": chat.id,
                    "api_key_id": chat.owner_api_key_id,
                    "title": self._opened(CHAT_SESSION_TITLE, chat.title_ciphertext, chat.id),
                    "created_at": chat.created_at,
                    "last_active_at": chat.last_active_at,
                    "prompt_tokens": chat.prompt_tokens,
                    "completion_tokens": chat.completion_tokens,
                    "messages": messages,
                }

    async def _messages(self, session_id: str) -> AsyncIterator[dict[str, Any]]:
        # A session holds at most MAX_HISTORY_MESSAGES-scale histories in practice, but nothing
        # caps it: messages are paged like everything else.
        statement = select(ChatMessage).where(ChatMessage.session_id == session_id)
        async for page in self._pages(statement, (ChatMessage.seq, ChatMessage.id)):
            for message in page:
                content = CHAT_MESSAGE_CONTENT.open(
                    self.cipher, message.content_ciphertext, f"{session_id}:{message.id}"
                )
                yield {"content": content, **_plain(message, MESSAGE_COLUMNS)}

    async def _journal(self, user_id: str, key_ids: list[str]) -> AsyncIterator[dict[str, Any]]:
        statement = select(JournalEntry).where(JournalRepository.of_account(user_id, key_ids))
        async for page in self._pages(statement, (JournalEntry.created_at, JournalEntry.id)):
            for entry in page:
                yield {
                    "id": entry.id,
                    "api_key_id": entry.owner_api_key_id,
                    "title": self._opened(JOURNAL_TITLE, entry.title_ciphertext, entry.id),
                    "content": JOURNAL_CONTENT.open(self.cipher, entry.content_ciphertext, entry.id),
                    "version": entry.version,
                    "created_at": entry.created_at,
                    "updated_at": entry.updated_at,
                }

    async def _audit(self, subjects: Iterable[str]) -> AsyncIterator[dict[str, Any]]:
        statement = select(AuditRecord).where(AuditRepository.naming(list(subjects)))
        async for page in self._pages(statement, (AuditRecord.timestamp, AuditRecord.id)):
            for record in page:
                yield document(record)

    def _opened(self, field: SealedField, token: str | None, row_id: str) -> str | None:
        return field.open(self.cipher, token, row_id) if token else None
