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
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import ColumnClause

from bastion.crypto.fields import VERSIONS, DecryptionError, FieldCipher, context
from bastion.crypto.models import EncryptionKeyCheck
from bastion.crypto.registry import CHAT_MESSAGE_CONTENT, CHAT_SESSION_TITLE, SEALED_FIELDS, SealedField
from bastion.db.types import utcnow
from bastion.settings import ConfigurationError

CHECK_PLAINTEXT = "bastion encryption key check"

# Values sealed before check values existed: one of each, under a key id seen for the first time,
# must open before that key's check value is recorded (else a wrong key at the first start after an
# upgrade would become the reference). Only these columns held values then.
SAMPLED_FIELDS: Sequence[SealedField] = (CHAT_SESSION_TITLE, CHAT_MESSAGE_CONTENT)
# Signing keys are sealed by auth/keyring.py as ``kid:body``.
SIGNING_KEYS = ("signing_keys", "private_ciphertext")


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


async def table_columns(connection: AsyncConnection) -> dict[str, set[str]]:
    """The columns of each table there is (an older schema lacks some sealed columns)."""

    def read(sync: Connection) -> dict[str, set[str]]:
        inspector = inspect(sync)
        names = inspector.get_table_names()
        return {name: {c["name"] for c in inspector.get_columns(name)} for name in names}

    return await connection.run_sync(read)


async def _still_used(connection: AsyncConnection, kid: str) -> bool:
    # Only run for a key id no longer configured (rare), so an unindexed prefix search is acceptable.
    present = await table_columns(connection)
    searches: list[tuple[str, str, str]] = [(*SIGNING_KEYS, f"{kid}:")]
    for sealed_field in SEALED_FIELDS:
        searches += [(sealed_field.table, sealed_field.column, f"{v}.{kid}.") for v in VERSIONS]
        if sealed_field.index_column is not None:
            searches.append((sealed_field.table, sealed_field.index_column, f"{kid}."))
    for table_name, column_name, prefix in searches:
        if column_name not in present.get(table_name, set()):
            continue
        sealed: ColumnClause[str] = column(column_name)
        query = select(
            exists().where(sealed.startswith(prefix, autoescape=True)).select_from(table(table_name, sealed))
        )
        if await connection.scalar(query):
            return True
    return False


async def _samples_open(connection: AsyncConnection, cipher: FieldCipher, kid: str) -> bool:
    """Whether one stored value of each sampled column sealed under ``kid`` opens (True if none)."""
    present = await table_columns(connection)
    for sampled in SAMPLED_FIELDS:
        if sampled.column not in present.get(sampled.table, set()):
            continue
        for version in VERSIONS:
            sealed: ColumnClause[str] = column(sampled.column)
            ids: list[ColumnClause[str]] = [column(name) for name in sampled.id_columns]
            query = (
                select(sealed, *ids)
                .select_from(table(sampled.table, sealed, *ids))
                .where(sealed.startswith(f"{version}.{kid}.", autoescape=True))
                .limit(1)
            )
            row = (await connection.execute(query)).first()
            if row is None:
                continue
            row_id = ":".join(str(part) for part in row[1:])
            try:
                cipher.decrypt(row[0], aad=context(sampled.table, sampled.name, row_id))
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
