# SPDX-License-Identifier: Apache-2.0
"""The content-signing keys: Ed25519 keys in the database, shared by every instance.

Created on first need (the first reply to sign), rotated by ``bastion keys rotate-content-signing``
with a grace period during which the previous public key stays published, reloaded by every
instance each minute so a rotation anywhere reaches all. The grace rules are the JWT keyring's
(``bastion.auth.keyring.Keyring``, ``bastion.crypto.grace.capped``): the newest key signs, a
superseded key verifies until its ``verify_until``, never extended by a later rotation.

The private half is sealed with the field cipher (registry entry CONTENT_SIGNING_KEY, so
``bastion db rekey`` re-seals it and the key check sees its key id) and erased once its grace is
over; the public half stays, in the clear.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.auth.keyring import KeyEntry, Keyring
from bastion.crypto.fields import FieldCipher
from bastion.crypto.grace import capped
from bastion.crypto.models import ContentSigningKey
from bastion.crypto.registry import CONTENT_SIGNING_KEY
from bastion.crypto.signatures import new_content_kid
from bastion.db.session import read_only, unit_of_work
from bastion.db.types import utcnow

ALGORITHM = "EdDSA"


class RotationConflict(Exception):
    """Another instance created or rotated a content key at the same moment."""


def _raw_public(key: ed25519.Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_key_of(row: ContentSigningKey) -> ed25519.Ed25519PublicKey:
    raw = base64.urlsafe_b64decode(row.public_key + "=" * (-len(row.public_key) % 4))
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def _new_row(cipher: FieldCipher, generation: int, now: datetime) -> ContentSigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    kid = new_content_kid(secrets.token_hex(8))
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ContentSigningKey(
        kid=kid,
        generation=generation,
        public_key=_raw_public(private.public_key()),
        private_ciphertext=CONTENT_SIGNING_KEY.seal(cipher, pem, kid),
        created_at=now,
    )


def _live(rows: Sequence[ContentSigningKey], now: datetime) -> list[ContentSigningKey]:
    return [row for row in rows if row.verify_until is None or row.verify_until > now]


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[ContentSigningKey]:
    async with read_only(sessionmaker) as session:
        return list((await session.scalars(select(ContentSigningKey))).all())


async def published_keys(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime
) -> dict[str, ed25519.Ed25519PublicKey]:
    """kid -> public key of every content key still in its grace at ``now`` (no key is opened)."""
    return {row.kid: public_key_of(row) for row in _live(await _rows(sessionmaker), now)}


async def rotate_content_key(
    sessionmaker: async_sessionmaker[AsyncSession],
    cipher: FieldCipher,
    *,
    grace: timedelta,
    clock: Callable[[], datetime] = utcnow,
) -> str:
    """A new content key signs from now on; older ones verify for ``grace`` (0: no longer at all)."""
    now = clock()
    try:
        async with unit_of_work(sessionmaker) as session:
            rows = (await session.scalars(select(ContentSigningKey))).all()
            for row in rows:
                row.verify_until = capped(row.verify_until, now + grace)
            row = _new_row(cipher, max((r.generation for r in rows), default=0) + 1, now)
            session.add(row)
    except IntegrityError as exc:
        raise RotationConflict("another content key was created at the same moment; run it again") from exc
    return row.kid


class ContentKeys:
    """This process's view of the content keys: the one that signs, and those still published."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        grace: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.cipher = cipher
        self.grace = grace
        self.clock = clock
        self._ring: Keyring | None = None
        self._first = asyncio.Lock()

    @property
    def keyring(self) -> Keyring | None:
        return self._ring

    def jwks(self, now: datetime) -> list[dict[str, Any]]:
        """The published public keys, as JWKs (none before the first key exists)."""
        return self._ring.jwks(now)["keys"] if self._ring is not None else []

    async def signing_key(self) -> KeyEntry:
        """The key that signs, loaded (and on a first start created) when none is known yet."""
        if self._ring is None:
            async with self._first:
                if self._ring is None:
                    await self.reload(create=True)
        if self._ring is None:  # pragma: no cover - reload(create=True) always leaves a keyring
            raise RuntimeError("no content-signing key")
        return self._ring.current

    async def reload(self, *, create: bool = False) -> int:
        """Re-read the keys (rotations made anywhere apply here); erase private halves past their
        grace. Returns how many were erased (a maintenance job's count)."""
        now = self.clock()
        rows = await _rows(self.sessionmaker)
        erased = await self._erase_retired(rows, now)
        live = _live(rows, now)
        if not live and create:
            try:
                async with unit_of_work(self.sessionmaker) as session:
                    # Looked at again inside the write: an instance that made one meanwhile wins
                    # (here, or by the unique generation when both write at once).
                    current = (await session.scalars(select(ContentSigningKey))).all()
                    if not _live(current, now):
                        generation = max((row.generation for row in current), default=0) + 1
                        session.add(_new_row(self.cipher, generation, now))
            except IntegrityError:
                pass  # another instance made it first: use theirs
            live = _live(await _rows(self.sessionmaker), now)
        if live:
            self._ring = Keyring([self._entry(row) for row in live], algorithm=ALGORITHM, grace=self.grace)
        return erased

    def _entry(self, row: ContentSigningKey) -> KeyEntry:
        public = public_key_of(row)
        private: ed25519.Ed25519PrivateKey | bytes = b""
        if row.private_ciphertext is not None:
            pem = CONTENT_SIGNING_KEY.open(self.cipher, row.private_ciphertext, row.kid)
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
            if not isinstance(loaded, ed25519.Ed25519PrivateKey):
                raise ValueError(f"content key {row.kid} is not an Ed25519 key")
            private = loaded
        return KeyEntry(row.kid, ALGORITHM, private, public, row.created_at, row.verify_until)

    async def _erase_retired(self, rows: Sequence[ContentSigningKey], now: datetime) -> int:
        retired = [r.kid for r in rows if r.private_ciphertext is not None and r not in _live(rows, now)]
        if not retired:
            return 0
        async with unit_of_work(self.sessionmaker) as session:
            await session.execute(
                update(ContentSigningKey)
                .where(ContentSigningKey.kid.in_(retired))
                .values(private_ciphertext=None)
            )
        return len(retired)
