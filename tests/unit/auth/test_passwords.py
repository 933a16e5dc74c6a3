# SPDX-License-Identifier: Apache-2.0
"""Hashing: argon2id and bcrypt, long passwords, rehash decisions, the worker pool."""

from __future__ import annotations

import threading

import pytest

from bastion.auth.passwords import (
    BCRYPT_PREFIX,
    HashingPool,
    HashParameters,
    PasswordHasher,
    PasswordTooLong,
)

CHEAP_ARGON2 = HashParameters(argon2_memory_kib=256, argon2_time_cost=1)
CHEAP_BCRYPT = HashParameters(algorithm="bcrypt", bcrypt_rounds=4)


def test_defaults_are_the_documented_costs() -> None:
    defaults = HashParameters()
    assert (defaults.algorithm, defaults.argon2_memory_kib, defaults.argon2_time_cost) == (
        "argon2",
        19_456,
        2,
    )
    assert defaults.bcrypt_rounds == 12


@pytest.mark.parametrize("parameters", [CHEAP_ARGON2, CHEAP_BCRYPT])
def test_hash_and_verify(parameters: HashParameters) -> None:
    hasher = PasswordHasher(parameters)
    stored = hasher.hash("Correct-Horse-9x!")
    assert "Correct-Horse" not in stored
    assert hasher.verify(stored, "Correct-Horse-9x!")
    assert not hasher.verify(stored, "Correct-Horse-9x?")
    assert hasher.hash("Correct-Horse-9x!") != stored  # salted
    assert not hasher.verify(stored, stored)  # a stored hash is never a credential


def test_bcrypt_does_not_truncate_at_72_bytes() -> None:
    hasher = PasswordHasher(CHEAP_BCRYPT)
    base = "A" * 72
    stored = hasher.hash(base + "one")
    assert stored.startswith(BCRYPT_PREFIX)
    assert hasher.verify(stored, base + "one")
    assert not hasher.verify(stored, base + "two")
    assert not hasher.verify(stored, base)
    unicode_password = "é" * 200  # 400 UTF-8 bytes
    assert hasher.verify(hasher.hash(unicode_password), unicode_password)


def test_too_long_passwords_are_refused_before_hashing() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    with pytest.raises(PasswordTooLong):
        hasher.hash("x" * 1025)
    with pytest.raises(PasswordTooLong):
        hasher.verify(hasher.hash("ok"), "x" * 10_000_000)


def test_both_algorithms_always_verify_and_rehash_when_weaker() -> None:
    argon2 = PasswordHasher(CHEAP_ARGON2)
    bcrypt_hasher = PasswordHasher(CHEAP_BCRYPT)
    from_bcrypt = bcrypt_hasher.hash("pw-one")
    from_argon2 = argon2.hash("pw-two")
    assert argon2.verify(from_bcrypt, "pw-one") and bcrypt_hasher.verify(from_argon2, "pw-two")
    assert argon2.needs_rehash(from_bcrypt) and bcrypt_hasher.needs_rehash(from_argon2)
    assert not argon2.needs_rehash(from_argon2) and not bcrypt_hasher.needs_rehash(from_bcrypt)
    stronger = PasswordHasher(HashParameters(argon2_memory_kib=512, argon2_time_cost=1))
    assert stronger.needs_rehash(from_argon2)
    assert PasswordHasher(HashParameters(algorithm="bcrypt", bcrypt_rounds=5)).needs_rehash(from_bcrypt)


@pytest.mark.parametrize("garbage", ["", "plain", "$argon2id$broken", BCRYPT_PREFIX + "nope", "$2b$04$short"])
def test_malformed_hashes_never_verify(garbage: str) -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    assert not hasher.verify(garbage, "anything")
    assert hasher.needs_rehash(garbage)


async def test_pool_hashes_off_the_event_loop() -> None:
    seen: list[str] = []

    class Recording(PasswordHasher):
        def hash(self, password: str) -> str:
            seen.append(threading.current_thread().name)
            return super().hash(password)

    pool = HashingPool(Recording(CHEAP_ARGON2), workers=2)
    try:
        stored = await pool.hash("Correct-Horse-9x!")
        assert await pool.verify(stored, "Correct-Horse-9x!")
        await pool.dummy_verify("whatever")
        assert seen and all(name.startswith("bastion-hash") for name in seen)
        with pytest.raises(PasswordTooLong):
            await pool.hash("x" * 5000)
    finally:
        pool.close()
