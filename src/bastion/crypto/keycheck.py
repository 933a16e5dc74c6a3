# SPDX-License-Identifier: Apache-2.0
"""The startup key check: DATABASE_ENCRYPTION_KEY must open what the database holds.

A wrong key would otherwise surface as a failed decryption on every read (a 500 each time). So the
first time a key id is configured, a fixed constant is sealed under it and stored; at every start
each stored check value whose key id is configured must open with the configured key, and every
key id that was ever used and that stored data still needs must be configured. Either failure is
a refusal naming the key ids, never the key material.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import column, exists, insert, inspect, select, table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import ColumnClause

from bastion.crypto.fields import DecryptionError, FieldCipher, context
from bastion.crypto.models import EncryptionKeyCheck
from bastion.db.types import utcnow
from bastion.settings import ConfigurationError

CHECK_PLAINTEXT = "bastion encryption key check"

# Where sealed values live and how each names its key id: (table, column, prefix before the body).
# Named as strings, not models, so this low-level module does not depend on the features that
# store ciphertext; a new encrypted column is added here.
SEALED_COLUMNS: Sequence[tuple[str, str, str]] = (
    ("chat_messages", "content_ciphertext", "v1.{kid}."),
    ("chat_sessions", "title_ciphertext", "v1.{kid}."),
    ("journal_entries", "content_ciphertext", "v1.{kid}."),
    ("journal_entries", "title_ciphertext", "v1.{kid}."),
    ("signing_keys", "private_ciphertext", "{kid}:"),  # auth/keyring.py seals as kid:body
    ("secret_versions", "sealed_value", "v1.{kid}."),  # rotated SESSION_SECRET, CSRF_SECRET, API_KEY_SALT
)


# Values sealed before check values existed: one of each, under a key id seen for the first time,
# must open before that key's check value is recorded (else a wrong key at the first start after an
# upgrade would become the reference). (table, sealed column, id columns, the context's column name.)
SAMPLED_COLUMNS: Sequence[tuple[str, str, tuple[str, ...], str]] = (
    ("chat_sessions", "title_ciphertext", ("id",), "title"),
    ("chat_messages", "content_ciphertext", ("session_id", "id"), "content"),
    ("journal_entries", "content_ciphertext", ("id",), "content"),
)


def check_context(kid: str) -> bytes:
    """The associated data of a check value: its purpose and its key id."""
    return context("encryption_key_checks", "check_value", kid)


class EncryptionKeyRefused(ConfigurationError):
    """DATABASE_ENCRYPTION_KEY cannot open the stored data: ``different`` and ``missing`` key ids."""

    def __init__(self, *, different: Sequence[str], missing: Sequence[str]) -> None:
        self.different = sorted(different)
        self.missing = sorted(missing)
        problems: list[str] = []
        if self.different:
            problems.append(
                f"DATABASE_ENCRYPTION_KEY {_names(self.different)} "
                f"{'is' if len(self.different) == 1 else 'are'} configured with a different key than "
                "the one that sealed the stored data"
            )
        if self.missing:
            problems.append(
                f"DATABASE_ENCRYPTION_KEY lacks {_names(self.missing)}, which stored data still needs: "
                "keep old keys listed after the newest one"
            )
        super().__init__(problems, heading="Bastion refuses to start")

    def one_line(self) -> str:
        return f"error: {'; '.join(self.problems)}"


def _names(kids: Sequence[str]) -> str:
    return ("key id " if len(kids) == 1 else "key ids ") + ", ".join(repr(kid) for kid in kids)


@dataclass(slots=True)
class KeyCheckReport:
    """What a passing check found: key ids verified, newly recorded, and retired (no data uses them)."""

    verified: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)


async def check_encryption_keys(
    engine: AsyncEngine,
    cipher: FieldCipher,
    *,
    record: bool = True,
    clock: Callable[[], datetime] = utcnow,
) -> KeyCheckReport | None:
    """Verify the configured keys against the database; None when its schema predates the check.

    With ``record`` the check value of each configured key id seen for the first time is stored.
    Raises EncryptionKeyRefused naming every key id that is different or missing.
    """
    async with engine.connect() as connection:
        if not await connection.run_sync(lambda sync: inspect(sync).has_table("encryption_key_checks")):
            return None
        stored = await _stored(connection)
        report = KeyCheckReport()
        different = [
            kid for kid, value in stored.items() if kid in cipher.kids and not _opens(cipher, kid, value)
        ]
        report.verified = [kid for kid in cipher.kids if kid in stored and kid not in different]
        missing: list[str] = []
        for kid in stored:
            if kid not in cipher.kids:
                (missing if await _still_used(connection, kid) else report.retired).append(kid)
        if different or missing:
            raise EncryptionKeyRefused(different=different, missing=missing)
    new = [kid for kid in cipher.kids if kid not in stored]
    if new:
        async with engine.connect() as connection:
            unopened = [kid for kid in new if not await _samples_open(connection, cipher, kid)]
        if unopened:
            raise EncryptionKeyRefused(different=unopened, missing=[])
    if record and new:
        await _record(engine, cipher, new, clock())
        report.recorded = new
    return report


async def _stored(connection: AsyncConnection) -> dict[str, str]:
    rows = await connection.execute(select(EncryptionKeyCheck.kid, EncryptionKeyCheck.check_value))
    return {kid: value for kid, value in rows}


def _opens(cipher: FieldCipher, kid: str, value: str) -> bool:
    try:
        return cipher.decrypt(value, aad=check_context(kid)) == CHECK_PLAINTEXT
    except DecryptionError:
        return False


async def _still_used(connection: AsyncConnection, kid: str) -> bool:
    # Only run for a key id no longer configured (rare), so an unindexed prefix search is acceptable.
    for table_name, column_name, prefix in SEALED_COLUMNS:
        sealed: ColumnClause[str] = column(column_name)
        query = select(
            exists()
            .where(sealed.startswith(prefix.format(kid=kid), autoescape=True))
            .select_from(table(table_name, sealed))
        )
        if await connection.scalar(query):
            return True
    return False


async def _samples_open(connection: AsyncConnection, cipher: FieldCipher, kid: str) -> bool:
    """Whether one stored value of each sampled column sealed under ``kid`` opens (True if none)."""
    for table_name, column_name, id_columns, context_column in SAMPLED_COLUMNS:
        sealed: ColumnClause[str] = column(column_name)
        ids: list[ColumnClause[str]] = [column(name) for name in id_columns]
        query = (
            select(sealed, *ids)
            .select_from(table(table_name, sealed, *ids))
            .where(sealed.startswith(f"v1.{kid}.", autoescape=True))
            .limit(1)
        )
        row = (await connection.execute(query)).first()
        if row is None:
            continue
        row_id = ":".join(str(part) for part in row[1:])
        try:
            cipher.decrypt(row[0], aad=context(table_name, context_column, row_id))
        except DecryptionError:
            return False
    return True


async def _record(engine: AsyncEngine, cipher: FieldCipher, kids: Sequence[str], now: datetime) -> None:
    for kid in kids:
        value = cipher.encrypt(CHECK_PLAINTEXT, aad=check_context(kid), kid=kid)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    insert(EncryptionKeyCheck).values(kid=kid, check_value=value, created_at=now)
                )
        except IntegrityError:
            # Another instance recorded this key id first: its value must open with our key.
            async with engine.connect() as connection:
                winner = (await _stored(connection))[kid]
            if not _opens(cipher, kid, winner):
                raise EncryptionKeyRefused(different=[kid], missing=[]) from None
