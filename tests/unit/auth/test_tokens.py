# SPDX-License-Identifier: Apache-2.0
"""Access tokens against a keyring, with time moved by an injected clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from bastion.auth.keyring import Keyring, _entry, seal, unseal
from bastion.auth.tokens import AccessTokens, SecretTokens, TokenInvalid
from bastion.crypto import material

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def entry(kid: str, created: datetime, algorithm: str = "EdDSA"):  # type: ignore[no-untyped-def]
    pem = next(iter(json.loads(material.signing_keyset(algorithm)).values()))
    return _entry(kid, algorithm, pem.encode(), created)


def tokens_for(ring: Keyring, clock: Clock, lifetime: timedelta = timedelta(minutes=30)) -> AccessTokens:
    return AccessTokens(
        keyring=lambda: ring, issuer="bastion", audience="bastion-api", lifetime=lifetime, clock=clock
    )


def issue(service: AccessTokens) -> str:
    return service.issue(
        subject="u1", role="user", scopes=frozenset({"profile:read"}), token_version=3, session_id="s1"
    ).token


def test_round_trip_carries_the_claims() -> None:
    clock = Clock()
    service = tokens_for(Keyring([entry("k1", T0)], algorithm="EdDSA", grace=timedelta(days=7)), clock)
    claims = service.verify(issue(service))
    assert (claims.subject, claims.role, claims.token_version, claims.session_id) == ("u1", "user", 3, "s1")
    assert claims.scopes == {"profile:read"} and claims.expires_at == T0 + timedelta(minutes=30)


def test_expiry_follows_the_injected_clock() -> None:
    clock = Clock()
    service = tokens_for(Keyring([entry("k1", T0)], algorithm="EdDSA", grace=timedelta(days=7)), clock)
    token = issue(service)
    clock.now = T0 + timedelta(minutes=30, seconds=29)  # within the 30 s leeway
    service.verify(token)
    clock.now = T0 + timedelta(minutes=31)
    with pytest.raises(TokenInvalid) as caught:
        service.verify(token)
    assert caught.value.reason == "expired"
    clock.now = T0 - timedelta(minutes=5)  # issued "in the future" relative to this verifier
    with pytest.raises(TokenInvalid, match="not_yet_valid"):
        service.verify(token)


def test_rotation_newest_signs_older_verifies_until_grace_ends() -> None:
    clock = Clock()
    old, new = entry("old", T0), entry("new", T0 + timedelta(days=1))
    ring_before = Keyring([old], algorithm="EdDSA", grace=timedelta(days=7))
    # Long-lived tokens here so the key's grace period, not the token's expiry, decides.
    old_token = issue(tokens_for(ring_before, clock, timedelta(days=30)))
    ring = Keyring([old, new], algorithm="EdDSA", grace=timedelta(days=7))
    clock.now = T0 + timedelta(days=1, minutes=1)
    service = tokens_for(ring, clock, timedelta(days=30))
    assert ring.current.kid == "new"
    new_token = issue(service)
    assert jwt.get_unverified_header(new_token)["kid"] == "new"
    service.verify(old_token)
    assert {k["kid"] for k in ring.jwks(clock.now)["keys"]} == {"old", "new"}
    clock.now = T0 + timedelta(days=8)  # grace of the old key (retired at day 1) is over
    assert ring.verify_key("old", clock.now) is None
    assert {k["kid"] for k in ring.jwks(clock.now)["keys"]} == {"new"}
    with pytest.raises(TokenInvalid, match="unknown_key"):
        service.verify(old_token)


def test_jwks_never_contains_private_material_or_hs_secrets() -> None:
    ed = entry("ed", T0)
    jwks = Keyring([ed], algorithm="EdDSA", grace=timedelta(days=1)).jwks(T0)
    [key] = jwks["keys"]
    assert "d" not in key and key["kty"] == "OKP" and key["use"] == "sig"
    rs = entry("rs", T0, "RS256")
    [rsa_key] = Keyring([rs], algorithm="RS256", grace=timedelta(days=1)).jwks(T0)["keys"]
    assert not {"d", "p", "q", "dp", "dq", "qi"} & rsa_key.keys()
    hs = _entry("hs", "HS256", b"s" * 32, T0)
    assert Keyring([hs], algorithm="HS256", grace=timedelta(days=1)).jwks(T0) == {"keys": []}


def test_sealed_keys_need_the_right_key_and_context() -> None:
    keys = material.parse_encryption_keys(material.encryption_key())
    pem = ed_pem()
    sealed = seal(pem, keys=keys, context="signing_key:a")
    assert pem not in sealed.encode()
    assert unseal(sealed, keys=keys, context="signing_key:a") == pem
    with pytest.raises(Exception):  # noqa: B017 - AES-GCM refuses a value moved to another key id
        unseal(sealed, keys=keys, context="signing_key:b")
    with pytest.raises(ValueError, match="no longer configured"):
        unseal(
            sealed, keys=material.parse_encryption_keys(material.encryption_key()), context="signing_key:a"
        )


def ed_pem() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_secret_tokens_are_purpose_scoped_keyed_hashes() -> None:
    tokens = SecretTokens(key=b"k" * 32)
    value = tokens.generate()
    assert len(value) >= 43
    refresh, reset = tokens.digest(value, purpose="refresh"), tokens.digest(value, purpose="reset")
    assert refresh != reset and len(refresh) == 64 and value not in refresh
    assert SecretTokens(key=b"j" * 32).digest(value, purpose="refresh") != refresh
    with pytest.raises(ValueError):
        SecretTokens(key=b"short")
