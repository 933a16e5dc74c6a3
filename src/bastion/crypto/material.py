# SPDX-License-Identifier: Apache-2.0
"""Key material: generation, parsing and strength checks, for settings and `bastion secrets`."""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import string
from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

MIN_ENTROPY_BITS = 256  # 32 bytes

# Values people paste from tutorials and example files. Matched case-insensitively as substrings
# of the secret, so "my-changeme-key-123..." is refused too.
PLACEHOLDER_MARKERS = (
    "changeme",
    "change-me",
    "change_me",
    "replace-me",
    "replace_me",
    "replaceme",
    "your-secret",
    "your_secret",
    "yoursecret",
    "your-key",
    "your_key",
    "placeholder",
    "example",
    "secret-key",
    "secret_key",
    "supersecret",
    "super-secret",
    "notasecret",
    "not-a-secret",
    "insecure",
    "password",
    "xxxxxxxx",
    "dummy",
    "sample",
    "default",
)

_HEX = frozenset(string.hexdigits)
_B64 = frozenset(string.ascii_letters + string.digits + "+/=-_")


def estimate_entropy_bits(value: str) -> float:
    """A conservative estimate of the entropy of a secret string.

    The alphabet is inferred from the characters used (hex, base64, or character classes), and
    low-diversity strings (a repeated character, a short cycle) are scored by their distinct
    characters instead, so ``"a" * 100`` is not mistaken for a strong key.
    """
    if not value:
        return 0.0
    chars = set(value)
    if chars <= _HEX:
        alphabet = 16
    elif chars <= _B64:
        alphabet = 64
    else:
        alphabet = 0
        if chars & set(string.ascii_lowercase):
            alphabet += 26
        if chars & set(string.ascii_uppercase):
            alphabet += 26
        if chars & set(string.digits):
            alphabet += 10
        if chars - set(string.ascii_letters + string.digits):
            alphabet += 33
    distinct = len(chars)
    # A random string of n symbols from an alphabet of size a shows about min(n, a) * (1 - 1/e)
    # distinct symbols; far fewer means structure, so score by what is actually used.
    expected_distinct = min(len(value), alphabet) * 0.5
    if distinct < expected_distinct:
        alphabet = max(distinct, 1)
    return len(value) * math.log2(alphabet) if alphabet > 1 else 0.0


def weakness(value: str, *, min_bits: int = MIN_ENTROPY_BITS) -> str | None:
    """Why a secret is too weak for production, or None when it is acceptable."""
    lowered = value.lower()
    for marker in PLACEHOLDER_MARKERS:
        if marker in lowered:
            return f"looks like a placeholder (contains {marker!r})"
    if re.fullmatch(r"(.{1,8})\1+", value):
        return "is a repeated pattern"
    bits = estimate_entropy_bits(value)
    if bits < min_bits:
        return f"has about {int(bits)} bits of entropy, under the {min_bits} required"
    return None


def token() -> str:
    """A 256-bit URL-safe random secret."""
    return secrets.token_urlsafe(32)


def new_kid() -> str:
    return secrets.token_hex(4)


def encryption_key() -> str:
    """A versioned AES-256 key in the `kid:base64` form DATABASE_ENCRYPTION_KEY takes."""
    return f"{new_kid()}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"


def parse_encryption_keys(raw: str) -> dict[str, bytes]:
    """Parse ``kid:key[,kid:key...]`` (newest first) into kid -> 32 raw bytes.

    A bare base64 key without a kid is accepted as kid ``"1"``.
    """
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        kid, sep, encoded = part.partition(":")
        if not sep:
            kid, encoded = "1", part
        kid = kid.strip()
        # No '.': a sealed value reads ``v2.<kid>.<body>`` and a blind index ``<kid>.<hex>``, so a
        # dotted key id would make every value it sealed unreadable.
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", kid):
            raise ValueError("key ids may use letters, digits, '_' and '-' (at most 32)")
        try:
            key = base64.urlsafe_b64decode(encoded.strip() + "=" * (-len(encoded.strip()) % 4))
        except (ValueError, TypeError) as exc:
            raise ValueError("keys must be base64") from exc
        if len(key) != 32:
            raise ValueError("each key must decode to exactly 32 bytes (AES-256)")
        if kid in keys:
            raise ValueError(f"key id {kid!r} appears twice")
        keys[kid] = key
    if not keys:
        raise ValueError("no key given")
    return keys


def signing_keyset(algorithm: str) -> str:
    """A JSON keyset ``{kid: PEM}`` with one new private key for the JWT algorithm."""
    if algorithm == "HS256":
        return ""
    private: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps({new_kid(): pem})


def parse_signing_keyset(raw: str, algorithm: str) -> dict[str, str]:
    """Validate a JWT_PRIVATE_KEYS value: a JSON object of kid -> PEM private key."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError("must be a JSON object mapping key ids to PEM private keys") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError("must be a non-empty JSON object mapping key ids to PEM private keys")
    for kid, pem in data.items():
        if not isinstance(pem, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", kid):
            raise ValueError("key ids must be short identifiers and keys PEM strings")
        if kid.startswith("content-"):  # the form of content-signing key ids (docs/signatures.md)
            raise ValueError(f"key id {kid!r} is reserved: 'content-' names the keys that sign replies")
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"key {kid!r} is not a readable unencrypted PEM private key") from exc
        if algorithm == "EdDSA" and not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(f"key {kid!r} is not an Ed25519 key, as EdDSA needs")
        if algorithm == "RS256":
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"key {kid!r} is not an RSA key, as RS256 needs")
            if key.key_size < 2048:
                raise ValueError(f"key {kid!r} is RSA-{key.key_size}; at least 2048 bits are required")
    return dict(data)


# Every secret Bastion uses and how to make one. JWT_PRIVATE_KEYS depends on the algorithm.
GENERATORS: Mapping[str, Callable[[str], str]] = {
    "SECRET_KEY": lambda _alg: token(),
    "JWT_PRIVATE_KEYS": signing_keyset,
    "DATABASE_ENCRYPTION_KEY": lambda _alg: encryption_key(),
    "SESSION_SECRET": lambda _alg: token(),
    "CSRF_SECRET": lambda _alg: token(),
    "API_KEY_SALT": lambda _alg: token(),
}


def generate_all(algorithm: str = "EdDSA") -> dict[str, str]:
    """A fresh value for every secret the algorithm needs (HS256 has no private keyset)."""
    values = {name: make(algorithm) for name, make in GENERATORS.items()}
    return {name: value for name, value in values.items() if value}
