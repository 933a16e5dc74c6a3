# SPDX-License-Identifier: Apache-2.0
"""Versions of SESSION_SECRET, CSRF_SECRET and API_KEY_SALT: recorded, rotated, loaded, reported.

Why a table, sealed under DATABASE_ENCRYPTION_KEY: every instance of a multi-instance deployment
must switch to the same new value without anyone editing each instance's environment, and the
previous value must stay known to all of them for the grace period. The database is the one
store they all read (Redis may be absent); the value is sealed with the field cipher so a copy of
the table alone yields nothing, exactly as the rotated JWT signing keys are kept.

The rules, one place for every reader (``choose``): a rotation or a settings value seen for the
first time sets ``verify_until`` on every older version (capped, never extended); the current
version is the newest one this process knows (its value is configured, or sealed in the table)
that nothing superseded; the previous one is the known version whose grace ends last, while it
runs. A sealed value whose grace is over is erased: a retired secret is not kept anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.crypto import material
from bastion.crypto.fields import FieldCipher
from bastion.crypto.grace import capped
from bastion.crypto.registry import SECRET_VERSION
from bastion.db.session import read_only, unit_of_work
from bastion.db.types import utcnow
from bastion.rotation.models import SecretVersion
from bastion.settings import Settings

VERSIONED = ("SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT")


class RotationRefused(Exception):
    """A rotation (or its status) cannot proceed; the message is one line, with no secret in it."""


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    source: str  # settings | rotated
    created_at: datetime
    verify_until: datetime | None
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Versions:
    """One secret as this process sees it: the value in use and, during a grace period, the previous."""

    name: str
    current: Version
    previous: Version | None


def fingerprint(name: str, value: str) -> str:
    """The id of a settings value: a one-way fingerprint (the value itself is never stored)."""
    return "fp-" + hashlib.sha256(f"bastion.secret_version\x00{name}\x00{value}".encode()).hexdigest()[:16]


def choose(name: str, known: Sequence[Version], now: datetime) -> Versions | None:
    """The current and previous versions among those whose value this process has."""
    if not known:
        return None
    live = [v for v in known if v.verify_until is None]
    if live:
        current = max(live, key=lambda v: (v.created_at, v.id))
    else:  # everything was superseded by values this process does not have: the longest-lived
        current = max(known, key=lambda v: (v.verify_until or now, v.created_at))
    graced = [v for v in known if v is not current and v.verify_until is not None and v.verify_until > now]
    previous = max(graced, key=lambda v: (v.verify_until or now, v.created_at)) if graced else None
    return Versions(name, current, previous)


def configured_value(settings: Settings, name: str) -> str:
    value = settings.secret(name)
    if value is None:
        raise RotationRefused(f"{name} is not configured")
    return value


def cipher_of(settings: Settings) -> FieldCipher:
    if settings.secret("DATABASE_ENCRYPTION_KEY") is None:
        raise RotationRefused("DATABASE_ENCRYPTION_KEY is needed to seal rotated secrets; set it first")
    return FieldCipher.for_settings(settings)


def _supersede(rows: Sequence[SecretVersion], now: datetime, grace: timedelta) -> None:
    for row in rows:
        row.verify_until = capped(row.verify_until, now + grace)


async def _rows(session: AsyncSession) -> list[SecretVersion]:
    query = select(SecretVersion).where(SecretVersion.name.in_(VERSIONED))
    return list((await session.scalars(query)).all())


async def _record_settings(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> None:
    """Record first sight of each settings value (a new one supersedes the others, with grace) and
    erase sealed values whose grace is over."""
    grace = timedelta(days=settings.secret_grace_days)
    async with sessionmaker() as session:
        rows = await _rows(session)
        known = {row.id for row in rows}
        for name in VERSIONED:
            version_id = fingerprint(name, configured_value(settings, name))
            if version_id not in known:
                _supersede([row for row in rows if row.name == name], now, grace)
                session.add(SecretVersion(id=version_id, name=name, source="settings", created_at=now))
        await session.execute(
            update(SecretVersion)
            .where(SecretVersion.verify_until <= now, SecretVersion.sealed_value.is_not(None))
            .values(sealed_value=None)
        )
        try:
            await session.commit()
        except IntegrityError:  # another instance recorded it first: its time stands
            await session.rollback()


def _known(rows: Sequence[SecretVersion], settings: Settings, name: str) -> list[Version]:
    configured = fingerprint(name, configured_value(settings, name))
    return [
        Version(row.id, row.source, row.created_at, row.verify_until)
        for row in rows
        if row.name == name and (row.id == configured or row.sealed_value is not None)
    ]


def _value(row: SecretVersion, settings: Settings, cipher: FieldCipher | None) -> bytes:
    if row.sealed_value is None:
        return configured_value(settings, row.name).encode()
    if cipher is None:
        raise RotationRefused("DATABASE_ENCRYPTION_KEY is needed to open rotated secrets")
    return SECRET_VERSION.open(cipher, row.sealed_value, row.id).encode()


async def load_versions(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> dict[str, Versions]:
    """Record first sight of the settings values, then each secret's current and previous value."""
    now = clock()
    await _record_settings(sessionmaker, settings, now)
    async with read_only(sessionmaker) as session:
        rows = await _rows(session)
    cipher = cipher_of(settings) if any(row.sealed_value for row in rows) else None
    by_id = {row.id: row for row in rows}
    loaded: dict[str, Versions] = {}
    for name in VERSIONED:
        chosen = choose(name, _known(rows, settings, name), now)
        if chosen is None:  # pragma: no cover - the settings value was just recorded
            raise RotationRefused(f"{name} has no usable version")
        current = replace(chosen.current, value=_value(by_id[chosen.current.id], settings, cipher))
        previous = chosen.previous
        if previous is not None:
            previous = replace(previous, value=_value(by_id[previous.id], settings, cipher))
        loaded[name] = Versions(name, current, previous)
    return loaded


def settings_versions(settings: Settings, now: datetime) -> dict[str, Versions]:
    """The settings values alone, as current (when the secret_versions table is not there yet)."""
    return {
        name: Versions(
            name,
            Version(
                fingerprint(name, value := configured_value(settings, name)),
                "settings",
                now,
                None,
                value.encode(),
            ),
            None,
        )
        for name in VERSIONED
    }


async def rotate_version(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    name: str,
    *,
    grace: timedelta,
    clock: Callable[[], datetime] = utcnow,
) -> Version:
    """A new random value for ``name``, sealed, current from now on; older values verify for ``grace``."""
    cipher = cipher_of(settings)
    await _record_settings(sessionmaker, settings, clock())  # the settings value is then an older one
    now = clock()
    version_id = "sv-" + secrets.token_hex(8)
    sealed = SECRET_VERSION.seal(cipher, material.GENERATORS[name]("HS256"), version_id)
    async with unit_of_work(sessionmaker) as session:
        _supersede([row for row in await _rows(session) if row.name == name], now, grace)
        session.add(
            SecretVersion(id=version_id, name=name, source="rotated", sealed_value=sealed, created_at=now)
        )
    return Version(version_id, "rotated", now, None)


async def stored_versions(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> dict[str, Versions | None]:
    """Read-only: each secret's current and previous version as recorded (no values opened)."""
    async with read_only(sessionmaker) as session:
        rows = await _rows(session)
    return {name: choose(name, _known(rows, settings, name), now) for name in VERSIONED}
