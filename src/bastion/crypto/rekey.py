# SPDX-License-Identifier: Apache-2.0
"""Re-seal stored values under the newest DATABASE_ENCRYPTION_KEY, and count what each key protects.

``rekey`` walks every sealed column (``crypto/registry.py``) in batches, in primary-key order. A
value sealed by an older key id, or in the older ``v1`` format, is opened and sealed again under
the active key; a blind index kept beside it is recomputed under the active key too. Each batch is
its own short transaction and each row is replaced only if it still holds the value that was read
(compare and set), so the service keeps serving while a rekey runs and a value the service changed
in between is simply left for the next run. An interrupted rekey resumes where it matters: what is
done no longer matches, so running it again finishes the rest.

A value that fails to open is counted and named (table, column, row id), never replaced.

``census`` (``bastion db rekey --check``) counts the values under each key id per column, so an old
key is removed from DATABASE_ENCRYPTION_KEY only once nothing needs it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, column, func, or_, select, table, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.expression import ColumnClause, TableClause

from bastion.auth import keyring
from bastion.crypto.fields import VERSION, DecryptionError, FieldCipher, context
from bastion.crypto.keycheck import table_columns
from bastion.crypto.registry import SEALED_FIELDS, SealedField
from bastion.db.session import read_only, unit_of_work

DEFAULT_BATCH = 500
# Enough of a stored value to read its format and key id (``v2.<kid>.``, ``<kid>.``, ``<kid>:``).
PREFIX_CHARS = 72
SIGNING_KEYS = "signing_keys.private_ciphertext"


@dataclass(slots=True)
class ColumnReport:
    """What a rekey did to one column."""

    resealed: int = 0
    #: replaced by the service between the read and the write: left for the next run
    changed: int = 0
    #: failed to open: (row id, reason); the values stay as they are
    unreadable: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Table:
    sealed: SealedField
    clause: TableClause
    value: ColumnClause[str]
    ids: tuple[ColumnClause[str], ...]
    index: ColumnClause[str] | None


def _table(sealed: SealedField) -> _Table:
    value: ColumnClause[str] = column(sealed.column)
    ids: tuple[ColumnClause[str], ...] = tuple(column(name) for name in sealed.id_columns)
    index: ColumnClause[str] | None = column(sealed.index_column) if sealed.index_column else None
    extra = (index,) if index is not None else ()
    return _Table(sealed, table(sealed.table, value, *ids, *extra), value, ids, index)


def _due(t: _Table, cipher: FieldCipher) -> ColumnElement[bool]:
    """Rows whose value (or blind index) is not yet under the active key in the current format."""
    current = f"{VERSION}.{cipher.active_kid}."
    due = ~t.value.startswith(current, autoescape=True)
    if t.index is not None:
        due = or_(due, ~t.index.startswith(f"{cipher.active_kid}.", autoescape=True))
    return and_(t.value.is_not(None), due)


async def _present(engine: AsyncEngine) -> dict[str, set[str]]:
    async with engine.connect() as connection:
        return await table_columns(connection)


def _fields(present: dict[str, set[str]], fields: Sequence[SealedField]) -> list[SealedField]:
    return [f for f in fields if f.column in present.get(f.table, set())]


async def rekey(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    *,
    raw_keys: dict[str, bytes],
    batch_size: int = DEFAULT_BATCH,
    fields: Sequence[SealedField] = SEALED_FIELDS,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, ColumnReport]:
    """Re-seal every value not under the active key; a report per ``table.column``."""
    reports: dict[str, ColumnReport] = {}
    for sealed in _fields(await _present(engine), fields):
        name = f"{sealed.table}.{sealed.column}"
        reports[name] = await _rekey_column(sessionmaker, cipher, _table(sealed), batch_size, name, progress)
    reports[SIGNING_KEYS] = await _rekey_signing_keys(sessionmaker, raw_keys, progress)
    return reports


async def _rekey_column(
    sessionmaker: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    t: _Table,
    batch_size: int,
    name: str,
    progress: Callable[[str, int], None] | None,
) -> ColumnReport:
    report = ColumnReport()
    after: tuple[str, ...] | None = None
    while True:
        query = select(t.value, *t.ids).select_from(t.clause).where(_due(t, cipher))
        if after is not None:
            query = query.where(_after(t.ids, after))
        query = query.order_by(*t.ids).limit(batch_size)
        async with read_only(sessionmaker) as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return report
        after = tuple(str(part) for part in rows[-1][1:])
        async with unit_of_work(sessionmaker) as session:
            for row in rows:
                old, ids = row[0], tuple(str(part) for part in row[1:])
                row_id = ":".join(ids)
                try:
                    plaintext = cipher.decrypt(old, aad=context(t.sealed.table, t.sealed.name, row_id))
                except DecryptionError as exc:
                    report.unreadable.append(f"{row_id} ({exc})")
                    continue
                values: dict[str, str] = {t.sealed.column: cipher.encrypt(plaintext, aad=_aad(t, row_id))}
                if t.sealed.index_column is not None:
                    values[t.sealed.index_column] = cipher.blind_index(plaintext, purpose=t.sealed.purpose)
                statement = (
                    update(t.clause)
                    .where(*(c == v for c, v in zip(t.ids, ids, strict=True)), t.value == old)
                    .values(values)
                )
                result = await session.execute(statement)
                if getattr(result, "rowcount", 0) == 1:
                    report.resealed += 1
                else:
                    report.changed += 1
        if progress is not None:
            progress(name, len(rows))


def _aad(t: _Table, row_id: str) -> bytes:
    return context(t.sealed.table, t.sealed.name, row_id)


def _after(ids: tuple[ColumnClause[str], ...], after: tuple[str, ...]) -> ColumnElement[bool]:
    """Keyset pagination over a (possibly composite) primary key: rows strictly after ``after``."""
    first, *rest = ids
    if not rest:
        return first > after[0]
    return or_(first > after[0], and_(first == after[0], _after(tuple(rest), after[1:])))


async def _rekey_signing_keys(
    sessionmaker: async_sessionmaker[AsyncSession],
    raw_keys: dict[str, bytes],
    progress: Callable[[str, int], None] | None,
) -> ColumnReport:
    """Signing keys made by ``bastion keys rotate-signing`` are sealed as ``kid:body`` under the
    configured key itself (``auth/keyring.py``); they move to the newest key id the same way."""
    report = ColumnReport()
    active = next(iter(raw_keys))
    value: ColumnClause[str] = column("private_ciphertext")
    kid: ColumnClause[str] = column("kid")
    signing = table("signing_keys", value, kid)
    async with read_only(sessionmaker) as session:
        rows = (
            await session.execute(
                select(value, kid)
                .select_from(signing)
                .where(value.is_not(None), ~value.startswith(f"{active}:", autoescape=True))
            )
        ).all()
    async with unit_of_work(sessionmaker) as session:
        for old, key_id in rows:
            where = f"signing_key:{key_id}"
            try:
                material = keyring.unseal(old, keys=raw_keys, context=where)
            except Exception as exc:  # the stored value, not this code, is at fault: name it
                report.unreadable.append(f"{key_id} ({type(exc).__name__})")
                continue
            new = keyring.seal(material, keys=raw_keys, context=where)
            result = await session.execute(
                update(signing).where(kid == key_id, value == old).values(private_ciphertext=new)
            )
            if getattr(result, "rowcount", 0) == 1:
                report.resealed += 1
            else:
                report.changed += 1
    if progress is not None and rows:
        progress(SIGNING_KEYS, len(rows))
    return report


async def due(
    engine: AsyncEngine, cipher: FieldCipher, *, fields: Sequence[SealedField] = SEALED_FIELDS
) -> int:
    """How many values a rekey would re-seal now (counted in the database, nothing read out)."""
    total = 0
    present = await _present(engine)
    async with engine.connect() as connection:
        for sealed in _fields(present, fields):
            t = _table(sealed)
            total += int(
                await connection.scalar(select(func.count()).select_from(t.clause).where(_due(t, cipher)))
                or 0
            )
    return total


async def census(
    engine: AsyncEngine, *, fields: Sequence[SealedField] = SEALED_FIELDS
) -> dict[str, Counter[str]]:
    """How many values each key id (and format) protects, per ``table.column``.

    Keys are ``v2.<kid>`` and ``v1.<kid>`` for sealed values, ``index <kid>`` for blind indexes and
    ``<kid>`` for signing keys. Only the prefix is read; no value is opened.
    """
    counts: dict[str, Counter[str]] = {}
    present = await _present(engine)
    async with engine.connect() as connection:

        async def prefixes(column_: ColumnClause[str], source: TableClause) -> AsyncIterator[str]:
            # Only the head of each value (its format and key id), streamed: constant memory.
            query = (
                select(func.substr(column_, 1, PREFIX_CHARS)).select_from(source).where(column_.is_not(None))
            )
            async for (head,) in await connection.stream(query):
                yield str(head)

        for sealed in _fields(present, fields):
            t = _table(sealed)
            tally: Counter[str] = Counter()
            async for head in prefixes(t.value, t.clause):
                version, kid, _ = [*head.split(".", 2), "", ""][:3]
                tally[f"{version}.{kid}"] += 1
            if t.index is not None:
                async for head in prefixes(t.index, t.clause):
                    tally[f"index {head.split('.', 1)[0]}"] += 1
            counts[f"{sealed.table}.{sealed.column}"] = tally
        if "private_ciphertext" in present.get("signing_keys", set()):
            private: ColumnClause[str] = column("private_ciphertext")
            signing = table("signing_keys", private)
            counts[SIGNING_KEYS] = Counter(
                [head.partition(":")[0] async for head in prefixes(private, signing)]
            )
    return counts


def kids_in_use(counts: dict[str, Counter[str]]) -> set[str]:
    """Every key id some stored value still needs."""
    used: set[str] = set()
    for name, tally in counts.items():
        for label, count in tally.items():
            if not count:
                continue
            if name == SIGNING_KEYS:
                used.add(label)
            elif label.startswith("index "):
                used.add(label.removeprefix("index "))
            else:
                used.add(label.split(".", 1)[1])
    return used
