# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import base64
import json
import secrets

import pytest

from bastion.crypto import material


@pytest.mark.parametrize(
    "value",
    [
        secrets.token_urlsafe(32),
        secrets.token_hex(32),
        base64.b64encode(secrets.token_bytes(32)).decode(),
    ],
    # Ids that are the same in every process (here and below): the parallel run's workers
    # (pytest-xdist) each collect the suite and must list the same tests, which random values
    # in the ids would not.
    ids=["urlsafe", "hex", "base64"],
)
def test_random_32_byte_secrets_pass(value: str) -> None:
    assert material.weakness(value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "entropy"),
        ("a" * 100, "repeated"),
        ("abcabcabcabcabcabcabcabcabcabcabcabcabcabcabc", "repeated"),
        pytest.param("my-changeme-secret-" + secrets.token_hex(32), "placeholder", id="random-changeme"),
        ("your-secret-key-here", "placeholder"),
        pytest.param(secrets.token_hex(16), "entropy", id="random-16-bytes"),
        ("Tr0ub4dor&3", "entropy"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "entropy"),
    ],
)
def test_weak_secrets_are_named(value: str, reason: str) -> None:
    why = material.weakness(value)
    assert why is not None and reason in why


def test_generate_all_makes_every_secret_distinct() -> None:
    values = material.generate_all("EdDSA")
    assert set(values) == set(material.GENERATORS)
    assert len(set(values.values())) == len(values)
    material.parse_signing_keyset(values["JWT_PRIVATE_KEYS"], "EdDSA")
    assert len(material.parse_encryption_keys(values["DATABASE_ENCRYPTION_KEY"])) == 1


def test_hs256_needs_no_keyset() -> None:
    assert "JWT_PRIVATE_KEYS" not in material.generate_all("HS256")


def test_rsa_keyset_is_3072_bits() -> None:
    keyset = json.loads(material.signing_keyset("RS256"))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(next(iter(keyset.values())).encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072


def test_encryption_keys_versioned_and_validated() -> None:
    one, two = material.encryption_key(), material.encryption_key()
    keys = material.parse_encryption_keys(f"{one},{two}")
    assert list(keys) == [one.split(":")[0], two.split(":")[0]]
    bare = base64.b64encode(secrets.token_bytes(32)).decode()
    assert list(material.parse_encryption_keys(bare)) == ["1"]
    for bad in ("", "k:" + base64.b64encode(b"x" * 16).decode(), f"{one},{one}", "bad kid!:" + bare, "k:@@@"):
        with pytest.raises(ValueError):
            material.parse_encryption_keys(bad)


def test_keyset_rejects_garbage() -> None:
    for bad in ("[]", "{}", "not json", '{"k": 5}', '{"../x": "pem"}'):
        with pytest.raises(ValueError):
            material.parse_signing_keyset(bad, "EdDSA")
