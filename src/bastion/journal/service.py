# SPDX-License-Identifier: Apache-2.0
"""Journal rules: owner-only entries, length limits, the content guard, text sealed to its row.

Titles and content pass the content guard like chat messages do (``chat/screening.py``): what is
stored is the guard's normalized text; INJECTION_ACTION=block refuses a suspected injection (422,
nothing written), ``flag`` stores it and audits the verdict.

An entry is sealed with the field cipher under its own id, so a ciphertext copied to another
entry (or from title to content) fails to open. Updates carry the entry's version: an edit made
on a stale copy is refused (412) rather than silently overwriting a newer one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.chat.screening import Screen
from bastion.crypto.fields import FieldCipher
from bastion.crypto.randomness import new_id
from bastion.crypto.registry import JOURNAL_CONTENT, JOURNAL_TITLE
from bastion.db.session import read_only, unit_of_work
from bastion.db.types import utcnow
from bastion.errors import BastionError, InvalidField, NotFound
from bastion.journal.models import JournalEntry
from bastion.journal.repository import JournalRepository
from bastion.ownership import Owner

MAX_PAGE = 100
MAX_TITLE_CHARS = 200


class EntryChanged(BastionError):
    status_code = 412
    code = "version_mismatch"
    default_message = "The entry changed since it was read; fetch it again and reapply the edit"


@dataclass(frozen=True, slots=True)
class EntrySummary:
    id: str
    title: str | None
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EntryView(EntrySummary):
    content: str


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Entries newest first, without their content; ``more`` when a next page may follow."""

    items: list[EntrySummary]
    more: bool


class JournalService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        max_length: int,
        screen: Screen,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.cipher = cipher
        self.screen = screen
        self.max_length = max_length
        self.clock = clock

    def check(self, title: str | None, content: str) -> None:
        """Refuse an empty entry, an over-long one, or a blank title (422, naming the field)."""
        if not content.strip():
            raise InvalidField("body.content", "blank", "The entry is empty")
        if len(content) > self.max_length:
            raise InvalidField(
                "body.content", "string_too_long", f"String should have at most {self.max_length} characters"
            )
        if title is not None and not title.strip():
            raise InvalidField("body.title", "blank", "A title, when given, has some text")

    async def _screened(self, title: str | None, content: str) -> tuple[str | None, str]:
        """Checked, then through the content guard (normalized; ``block`` raises a 422)."""
        self.check(title, content)
        fields = [("body.content", content)] + ([("body.title", title)] if title is not None else [])
        screened = await self.screen.check_inputs(fields, scan_as="journal")
        return (screened[1] if title is not None else None), screened[0]

    async def create(self, owner: Owner, *, title: str | None, content: str) -> EntryView:
        title, content = await self._screened(title, content)
        now = self.clock()
        entry = JournalEntry(
            id=new_id(),
            owner_user_id=owner.user_id,
            owner_api_key_id=owner.api_key_id,
            version=1,
            created_at=now,
            updated_at=now,
        )
        self._seal(entry, title, content)
        async with unit_of_work(self._sessionmaker) as db:
            await JournalRepository(db).add(entry)
        return self._view(entry)

    async def get(self, owner: Owner, entry_id: str) -> EntryView:
        async with read_only(self._sessionmaker) as db:
            return self._view(await self._owned(JournalRepository(db), owner, entry_id))

    async def page(self, owner: Owner, *, after: tuple[datetime, str] | None, limit: int) -> EntryPage:
        """A page after the position (creation time, id) of the previous page's last entry.

        A position is not an entry: paging goes on when that entry was deleted meanwhile, and a
        position from someone else's journal only orders this owner's entries.
        """
        size = min(max(limit, 1), MAX_PAGE)
        async with read_only(self._sessionmaker) as db:
            rows = await JournalRepository(db).page(owner, after=after, limit=size)
            items = [self._summary(row) for row in rows]
        return EntryPage(items=items, more=len(items) == size)

    async def update(
        self, owner: Owner, entry_id: str, *, title: str | None, content: str, expected_version: int | None
    ) -> EntryView:
        title, content = await self._screened(title, content)
        async with unit_of_work(self._sessionmaker) as db:
            entry = await self._owned(JournalRepository(db), owner, entry_id)
            if expected_version is not None and entry.version != expected_version:
                raise EntryChanged()
            self._seal(entry, title, content)
            entry.version += 1
            entry.updated_at = max(self.clock(), entry.created_at)
            return self._view(entry)

    async def delete(self, owner: Owner, entry_id: str, *, expected_version: int | None = None) -> None:
        async with unit_of_work(self._sessionmaker) as db:
            repo = JournalRepository(db)
            if expected_version is not None:
                entry = await self._owned(repo, owner, entry_id)
                if entry.version != expected_version:
                    raise EntryChanged()
            if not await repo.delete(entry_id, owner):
                raise NotFound("Journal entry not found")

    @staticmethod
    async def _owned(repo: JournalRepository, owner: Owner, entry_id: str) -> JournalEntry:
        # Someone else's entry and a made-up id look the same: 404.
        entry = await repo.get(entry_id, owner)
        if entry is None:
            raise NotFound("Journal entry not found")
        return entry

    def _seal(self, entry: JournalEntry, title: str | None, content: str) -> None:
        sealed_title = JOURNAL_TITLE.seal(self.cipher, title, entry.id) if title is not None else None
        entry.title_ciphertext = sealed_title
        entry.content_ciphertext = JOURNAL_CONTENT.seal(self.cipher, content, entry.id)

    def _title(self, entry: JournalEntry) -> str | None:
        if entry.title_ciphertext is None:
            return None
        return JOURNAL_TITLE.open(self.cipher, entry.title_ciphertext, entry.id)

    def _summary(self, entry: JournalEntry) -> EntrySummary:
        return EntrySummary(
            id=entry.id,
            title=self._title(entry),
            version=entry.version,
            created_at=entry.created_at,
            updated_at=entry.updated_at,
        )

    def _view(self, entry: JournalEntry) -> EntryView:
        content = JOURNAL_CONTENT.open(self.cipher, entry.content_ciphertext, entry.id)
        return EntryView(**asdict(self._summary(entry)), content=content)
