# SPDX-License-Identifier: Apache-2.0
"""The JWT keyring: versioned signing keys, the newest signs, older ones verify for a grace period.

Keys come from two places. JWT_PRIVATE_KEYS (``{kid: PEM}``) or SECRET_KEY (HS256) are the
operator's keys; ``bastion keys rotate-signing`` adds keys to the ``signing_keys`` table with the
private half sealed under DATABASE_ENCRYPTION_KEY. The table also records when each settings key
was first seen, which is how key age is known without trusting the environment. Every instance
reloads the keyring periodically, so a rotation reaches all of them.

Only public keys are ever published (``jwks()``); HS256 secrets never leave the process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.auth.models import SigningKey
from bastion.crypto import material
from bastion.crypto.grace import capped
from bastion.db.session import unit_of_work
from bastion.db.types import utcnow
from bastion.settings import Settings

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class KeyEntry:
    kid: str
    algorithm: str
    signing_key: PrivateKey | bytes
    verify_key: PublicKey | bytes
    created_at: datetime
    verify_until: datetime | None = None  # set when a rotation superseded it


class Keyring:
    """An immutable view of the keys; ``verify_key`` applies the grace period at ``now``."""

    def __init__(self, entries: list[KeyEntry], *, algorithm: str, grace: timedelta) -> None:
        if not entries:
            raise ValueError("a keyring needs at least one key")
        self.algorithm = algorithm
        self.grace = grace
        # Newest first; a key a rotation superseded (verify_until set) never before one it did not,
        # even when both were recorded in the same instant.
        self.entries = sorted(
            entries, key=lambda e: (e.verify_until is None, e.created_at, e.kid), reverse=True
        )
        # A key is retired when the next newer key appeared; it verifies for `grace` after that.
        self._retired: dict[str, datetime | None] = {}
        newer: datetime | None = None
        for entry in self.entries:
            self._retired[entry.kid] = newer
            newer = entry.created_at

    @property
    def current(self) -> KeyEntry:
        return self.entries[0]

    def end_of(self, entry: KeyEntry) -> datetime | None:
        """When ``entry`` stops verifying; None for the key that signs."""
        if entry is self.current:
            return None
        if entry.verify_until is not None:
            return entry.verify_until
        retired = self._retired[entry.kid]
        return retired + self.grace if retired is not None else None

    def verify_key(self, kid: str, now: datetime) -> PublicKey | bytes | None:
        for entry in self.entries:
            if entry.kid == kid:
                end = self.end_of(entry)
                if end is not None and now >= end:
                    return None
                return entry.verify_key
        return None

    def jwks(self, now: datetime) -> dict[str, Any]:
        """Public keys still accepted at ``now``, as a JWK Set (empty for HS256)."""
        keys: list[dict[str, Any]] = []
        for entry in self.entries:
            if isinstance(entry.verify_key, bytes) or self.verify_key(entry.kid, now) is None:
                continue
            if isinstance(entry.verify_key, ed25519.Ed25519PublicKey):
                jwk = OKPAlgorithm.to_jwk(entry.verify_key, as_dict=True)
            else:
                jwk = RSAAlgorithm.to_jwk(entry.verify_key, as_dict=True)
            jwk.pop("d", None)  # belt and braces: a public JWK has no private component
            keys.append({**jwk, "kid": entry.kid, "alg": entry.algorithm, "use": "sig"})
        return {"keys": keys}


# -- sealing private keys at rest ----------------------------------------------------------------


def seal(plaintext: bytes, *, keys: dict[str, bytes], context: str) -> str:
    """AES-256-GCM under the newest DATABASE_ENCRYPTION_KEY, bound to ``context`` as AAD."""
    kid, key = next(iter(keys.items()))
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, context.encode())
    return f"{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(value: str, *, keys: dict[str, bytes], context: str) -> bytes:
    kid, _, encoded = value.partition(":")
    if kid not in keys:
        raise ValueError("sealed with a DATABASE_ENCRYPTION_KEY that is no longer configured")
    raw = base64.urlsafe_b64decode(encoded)
    return AESGCM(keys[kid]).decrypt(raw[:12], raw[12:], context.encode())


def _encryption_keys(settings: Settings) -> dict[str, bytes]:
    raw = settings.secret("DATABASE_ENCRYPTION_KEY")
    if raw is None:
        raise ValueError("DATABASE_ENCRYPTION_KEY is needed to store rotated signing keys")
    return material.parse_encryption_keys(raw)


# -- building the keyring --------------------------------------------------------------------------


def hs_kid(secret: bytes) -> str:
    return "hs-" + hashlib.sha256(b"bastion.kid:" + secret).hexdigest()[:16]


def _entry(
    kid: str, algorithm: str, secret_or_pem: bytes, created_at: datetime, verify_until: datetime | None = None
) -> KeyEntry:
    if algorithm == "HS256":
        return KeyEntry(kid, algorithm, secret_or_pem, secret_or_pem, created_at, verify_until)
    private = serialization.load_pem_private_key(secret_or_pem, password=None)
    if not isinstance(private, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"key {kid!r} is of an unsupported type")
    return KeyEntry(kid, algorithm, private, private.public_key(), created_at, verify_until)


def settings_keys(settings: Settings) -> dict[str, bytes]:
    """kid -> key material from the settings (PEM bytes, or the HS256 secret)."""
    if settings.jwt_algorithm == "HS256":
        secret = settings.secret("SECRET_KEY")
        if secret is None:
            raise ValueError("HS256 needs SECRET_KEY")
        return {hs_kid(secret.encode()): secret.encode()}
    raw = settings.secret("JWT_PRIVATE_KEYS")
    if raw is None:
        raise ValueError(f"{settings.jwt_algorithm} needs JWT_PRIVATE_KEYS")
    return {
        kid: pem.encode() for kid, pem in material.parse_signing_keyset(raw, settings.jwt_algorithm).items()
    }


async def load_keyring(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> Keyring:
    """Record first sight of the settings keys, then build the keyring from settings + table."""
    algorithm = settings.jwt_algorithm
    configured = settings_keys(settings)
    now = clock()
    async with sessionmaker() as session:
        known = {row.kid for row in (await session.scalars(select(SigningKey))).all()}
        for kid in configured:
            if kid not in known:
                session.add(SigningKey(kid=kid, algorithm=algorithm, source="settings", created_at=now))
        try:
            await session.commit()
        except IntegrityError:  # another instance recorded it first: its time stands
            await session.rollback()
    async with unit_of_work(sessionmaker) as session:
        rows = (await session.scalars(select(SigningKey).where(SigningKey.algorithm == algorithm))).all()
    entries: list[KeyEntry] = []
    sealing: dict[str, bytes] | None = None
    for row in rows:
        if row.kid in configured:
            entries.append(_entry(row.kid, algorithm, configured[row.kid], row.created_at, row.verify_until))
        elif row.private_ciphertext is not None:
            sealing = sealing or _encryption_keys(settings)
            material_bytes = unseal(row.private_ciphertext, keys=sealing, context=f"signing_key:{row.kid}")
            entries.append(_entry(row.kid, algorithm, material_bytes, row.created_at, row.verify_until))
        # A settings key removed from the configuration is gone: it can neither sign nor verify.
    return Keyring(entries, algorithm=algorithm, grace=timedelta(days=settings.jwt_key_grace_days))


def settings_only_keyring(settings: Settings, now: datetime) -> Keyring:
    """The settings keys alone, all as new (used when the signing_keys table is not there yet)."""
    entries = [
        _entry(kid, settings.jwt_algorithm, value, now) for kid, value in settings_keys(settings).items()
    ]
    return Keyring(
        entries, algorithm=settings.jwt_algorithm, grace=timedelta(days=settings.jwt_key_grace_days)
    )


async def rotate_signing_key(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    grace: timedelta | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> str:
    """Add a new signing key: it signs from now on; the previous one verifies for ``grace``
    (JWT_KEY_GRACE_DAYS when not given; 0 ends it at once), older ones never longer than that."""
    algorithm = settings.jwt_algorithm
    grace = timedelta(days=settings.jwt_key_grace_days) if grace is None else grace
    if algorithm == "HS256":
        kid = "hs-" + material.new_kid()
        secret = material.token().encode()
    else:
        kid, pem = next(iter(json.loads(material.signing_keyset(algorithm)).items()))
        secret = pem.encode()
    sealed = seal(secret, keys=_encryption_keys(settings), context=f"signing_key:{kid}")
    ring = await load_keyring(sessionmaker, settings, clock=clock)  # record settings keys as older
    now = clock()
    ends = {entry.kid: ring.end_of(entry) for entry in ring.entries}
    async with unit_of_work(sessionmaker) as session:
        for row in (await session.scalars(select(SigningKey).where(SigningKey.kid.in_(ends)))).all():
            row.verify_until = capped(ends[row.kid], now + grace)
        session.add(
            SigningKey(
                kid=kid, algorithm=algorithm, source="rotated", private_ciphertext=sealed, created_at=now
            )
        )
    return kid
