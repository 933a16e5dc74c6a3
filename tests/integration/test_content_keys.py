# SPDX-License-Identifier: Apache-2.0
"""Content-signing keys in the database, on SQLite and PostgreSQL: one first key however many
instances ask at once, rotation with grace, private halves sealed, re-sealed by a rekey."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

from sqlalchemy import select

from bastion.crypto import material, signatures
from bastion.crypto.content_keys import ContentKeys, RotationConflict, published_keys, rotate_content_key
from bastion.crypto.fields import FieldCipher
from bastion.crypto.models import ContentSigningKey
from bastion.crypto.rekey import rekey
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow
from tests.support.clock import DateClock


async def test_keys_are_made_once_sealed_rotated_and_rekeyed(migrated_database_url: str) -> None:
    engine = create_engine(migrated_database_url)
    sessionmaker = create_sessionmaker(engine)
    old_key = material.encryption_key()
    cipher = FieldCipher.from_setting(old_key, environment="test")
    grace = timedelta(days=30)
    try:
        # Four instances starting together: one key is made, and all four sign with it.
        instances = [ContentKeys(sessionmaker=sessionmaker, cipher=cipher, grace=grace) for _ in range(4)]
        assert [await i.reload() for i in instances] == [0, 0, 0, 0]
        assert all(i.keyring is None for i in instances)  # nothing made before it is needed
        entries = await asyncio.gather(*(i.signing_key() for i in instances))
        assert len({entry.kid for entry in entries}) == 1
        first = entries[0].kid
        async with sessionmaker() as db:
            [row] = (await db.scalars(select(ContentSigningKey))).all()
        assert row.generation == 1 and row.private_ciphertext is not None
        assert row.private_ciphertext.startswith(f"v2.{cipher.active_kid}.")
        assert "PRIVATE KEY" not in row.private_ciphertext

        second = await rotate_content_key(sessionmaker, cipher, grace=grace)
        for instance in instances:
            await instance.reload()
            assert instance.keyring is not None and instance.keyring.current.kid == second
            assert {jwk["kid"] for jwk in instance.jwks(utcnow())} == {first, second}
        assert (await published_keys(sessionmaker, utcnow())).keys() == {first, second}

        # A rekey re-seals the private halves under the new key; they still sign.
        new_key = material.encryption_key()
        rotated = FieldCipher.from_setting(f"{new_key},{old_key}", environment="test")
        reports = await rekey(engine, sessionmaker, rotated, raw_keys=material.parse_encryption_keys(new_key))
        assert reports["content_signing_keys.private_ciphertext"].resealed == 2
        reopened = ContentKeys(sessionmaker=sessionmaker, cipher=rotated, grace=grace)
        entry = await reopened.signing_key()
        digest = hashlib.sha256(b"{}").hexdigest()
        made = signatures.sign(entry.signing_key, kid=entry.kid, digest=digest, request_id="r-1", time=1)  # type: ignore[arg-type]
        signatures.verify(b"{}", made.header_value(), await published_keys(sessionmaker, utcnow()))
    finally:
        await engine.dispose()


async def test_grace_zero_ends_the_old_key_at_once_and_rotations_collide(migrated_database_url: str) -> None:
    engine = create_engine(migrated_database_url)
    sessionmaker = create_sessionmaker(engine)
    cipher = FieldCipher.from_setting(material.encryption_key(), environment="test")
    clock = DateClock()
    try:
        keys = ContentKeys(sessionmaker=sessionmaker, cipher=cipher, grace=timedelta(days=7), clock=clock)
        first = (await keys.signing_key()).kid
        # An emergency rotation (a key that leaked): the old one is gone from the JWKS at once.
        second = await rotate_content_key(sessionmaker, cipher, grace=timedelta(0), clock=clock)
        clock.now += timedelta(seconds=1)
        assert await keys.reload() == 1  # and its private half erased
        assert [jwk["kid"] for jwk in keys.jwks(clock())] == [second]
        assert (await published_keys(sessionmaker, clock())).keys() == {second}
        async with sessionmaker() as db:
            old = await db.get(ContentSigningKey, first)
        assert old is not None and old.private_ciphertext is None

        # Two rotations racing for the same generation: one wins, the other is told to retry.
        results = await asyncio.gather(
            *(
                rotate_content_key(sessionmaker, cipher, grace=timedelta(days=1), clock=clock)
                for _ in range(2)
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(r, str) for r in results) >= 1
        assert all(isinstance(r, str | RotationConflict) for r in results)
        async with sessionmaker() as db:
            rows = (await db.scalars(select(ContentSigningKey))).all()
        # Whatever the interleaving, exactly one key signs from now on.
        assert len([row for row in rows if row.verify_until is None]) == 1
    finally:
        await engine.dispose()
