# SPDX-License-Identifier: Apache-2.0
"""Rotating a secret and reporting every secret's age: what ``bastion secrets`` and ``bastion check`` run.

SESSION_SECRET, CSRF_SECRET and API_KEY_SALT rotate in ``secret_versions`` (``rotation.store``);
the HS256 SECRET_KEY is a JWT signing key, so it rotates in the keyring's ``signing_keys`` table
like every other signing key (``auth.keyring.rotate_signing_key``). Either way the new value is
current for every instance at its next reload (within a minute), and the previous one verifies
for the grace period. An emergency rotation has no grace and ends every session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent
from bastion.audit.service import AuditService
from bastion.auth.keyring import KeyEntry, Keyring, rotate_signing_key, settings_keys
from bastion.auth.models import SigningKey
from bastion.db.session import read_only
from bastion.db.types import utcnow
from bastion.rotation.store import VERSIONED, RotationRefused, cipher_of, rotate_version, stored_versions
from bastion.settings import Settings

ROTATABLE = (*VERSIONED, "SECRET_KEY")


@dataclass(frozen=True, slots=True)
class Rotated:
    name: str
    version: str
    previous_until: datetime | None  # None: no grace (emergency or --grace-days 0)
    sessions_ended: int | None  # emergency rotations only


@dataclass(frozen=True, slots=True)
class SecretStatus:
    """One secret's age and grace, never its value."""

    name: str
    source: str | None  # settings | rotated; None: not recorded yet (recorded at the next start)
    version: str | None
    created_at: datetime | None
    previous_until: datetime | None

    def age_days(self, now: datetime) -> float | None:
        return (now - self.created_at).total_seconds() / 86400 if self.created_at else None

    def overdue(self, now: datetime, period_days: int) -> bool:
        age = self.age_days(now)
        return age is not None and age >= period_days

    def as_dict(self, now: datetime, period_days: int) -> dict[str, Any]:
        age = self.age_days(now)
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "age_days": round(age, 1) if age is not None else None,
            "previous_verifies_until": self.previous_until.isoformat() if self.previous_until else None,
            "rotation_due": self.overdue(now, period_days),
        }


def rotatable_name(raw: str, settings: Settings) -> str:
    """The canonical name, or ``RotationRefused`` naming what is wrong."""
    name = raw.strip().upper()
    if name not in ROTATABLE:
        raise RotationRefused(f"unknown secret {raw!r}; rotatable: {', '.join(ROTATABLE)}")
    if name == "SECRET_KEY" and settings.jwt_algorithm != "HS256":
        raise RotationRefused(
            f"SECRET_KEY is only used with JWT_ALGORITHM=HS256 (configured: {settings.jwt_algorithm}); "
            "rotate the JWT signing key with `bastion keys rotate-signing`"
        )
    return name


async def rotate(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    raw_name: str,
    *,
    grace: timedelta,
    emergency: bool = False,
    end_sessions: Callable[[], Awaitable[int]] | None = None,
    audit: AuditService,
    clock: Callable[[], datetime] = utcnow,
) -> Rotated:
    """Rotate ``raw_name``: a new value, current from now on; the previous verifies for ``grace``.

    ``emergency``: no grace, and ``end_sessions`` ends every session of every user. Audited as
    ``secrets.rotated`` with the secret's name and the new version id only.
    """
    name = rotatable_name(raw_name, settings)
    cipher_of(settings)  # refuse before any change when nothing could be sealed
    if emergency:
        grace = timedelta(0)
    if name == "SECRET_KEY":
        version = await rotate_signing_key(sessionmaker, settings, grace=grace, clock=clock)
        created = clock()
    else:
        made = await rotate_version(sessionmaker, settings, name, grace=grace, clock=clock)
        version, created = made.id, made.created_at
    ended = await end_sessions() if emergency and end_sessions is not None else None
    previous_until = created + grace if grace > timedelta(0) else None
    await audit.record(
        AuditEvent.SECRET_ROTATED,
        actor_type="cli",
        target_type="secret",
        target_id=name,
        request_id="cli",
        details={
            "version": version,
            "emergency": emergency,
            "grace_days": grace.total_seconds() / 86400,
            "previous_verifies_until": previous_until.isoformat() if previous_until else None,
            "sessions_ended": ended,
        },
    )
    return Rotated(name, version, previous_until, ended)


async def _signing_status(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> SecretStatus:
    """The JWT signing key's status, from the keyring's own rules (no key material opened)."""
    name = "SECRET_KEY" if settings.jwt_algorithm == "HS256" else "JWT_PRIVATE_KEYS"
    configured = settings_keys(settings)
    async with read_only(sessionmaker) as session:
        query = select(SigningKey).where(SigningKey.algorithm == settings.jwt_algorithm)
        rows = (await session.scalars(query)).all()
    entries = [
        KeyEntry(row.kid, row.algorithm, b"", b"", row.created_at, row.verify_until)
        for row in rows
        if row.kid in configured or row.private_ciphertext is not None
    ]
    if not entries:
        return SecretStatus(name, None, None, None, None)
    ring = Keyring(
        entries, algorithm=settings.jwt_algorithm, grace=timedelta(days=settings.jwt_key_grace_days)
    )
    ends = [end for entry in ring.entries if (end := ring.end_of(entry)) is not None and end > now]
    current = ring.current
    source = "settings" if current.kid in configured else "rotated"
    return SecretStatus(name, source, current.kid, current.created_at, max(ends) if ends else None)


async def status(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> list[SecretStatus]:
    """Every rotatable secret's age, source and grace, read-only (records nothing)."""
    now = clock()
    found: list[SecretStatus] = []
    for name, versions in (await stored_versions(sessionmaker, settings, now)).items():
        if versions is None:
            found.append(SecretStatus(name, None, None, None, None))
            continue
        current, previous = versions.current, versions.previous
        found.append(
            SecretStatus(
                name,
                current.source,
                current.id,
                current.created_at,
                previous.verify_until if previous is not None else None,
            )
        )
    found.append(await _signing_status(sessionmaker, settings, now))
    return found


def rotation_warnings(statuses: list[SecretStatus], now: datetime, period_days: int) -> list[str]:
    """One line per secret past SECRET_ROTATION_DAYS, naming the command that rotates it."""
    warnings = []
    for item in statuses:
        if item.overdue(now, period_days):
            command = (
                "bastion keys rotate-signing"
                if item.name == "JWT_PRIVATE_KEYS"
                else f"bastion secrets rotate {item.name}"
            )
            warnings.append(
                f"{item.name} is {int(item.age_days(now) or 0)} days old, past SECRET_ROTATION_DAYS="
                f"{period_days}: rotate it with `{command}`"
            )
    return warnings
