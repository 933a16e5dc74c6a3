# SPDX-License-Identifier: Apache-2.0
"""API key material: the ``bst_<id>_<secret>`` format, keyed hashes, and static keys.

A managed key is ``bst_`` + 16 hex characters of public id + ``_`` + 43 URL-safe characters of
secret (256 bits): the prefix makes leaked keys greppable (secret scanners, logs), the public id
makes lookup one indexed read. Only ``HMAC-SHA256(API_KEY_SALT, whole key)`` is stored; the
pepper lives outside the database, so a copy of the table yields nothing usable. Every comparison
is ``hmac.compare_digest``.

Static keys (API_KEYS, ML_API_KEYS) are for simple deployments with no database-managed keys:
each presented key is hashed with the same pepper (under a different purpose) and compared in
constant time against every configured key. Their principals carry a stable, non-secret id
(``static:`` + 12 hex characters of that hash), so limits and quotas key on something that is
never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from bastion.auth.permissions import scope_permissions
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.crypto.grace import Graced

PREFIX = "bst_"
MAX_PRESENTED_LENGTH = 256  # anything longer is refused before any hashing
_MANAGED = re.compile(r"bst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_PURPOSE_MANAGED = b"bastion.api_key.v1\x00"
_PURPOSE_STATIC = b"bastion.static_key.v1\x00"
_PURPOSE_CACHE = b"bastion.api_key.cache.v1\x00"

# API_KEYS: an application's keys (chat, journal, voice). ML_API_KEYS: machine clients of the
# OpenAI-compatible /v1 surface, as a service.
STATIC_APP_SCOPES = frozenset({"chat", "journal", "voice", "completions"})
STATIC_ML_SCOPES = frozenset({"completions"})


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret: str  # the whole presented value, shown once

    @property
    def value(self) -> str:
        return self.secret


def generate(key_id: str | None = None) -> NewKey:
    """A fresh key (with a fresh public id unless ``key_id`` is given, as on rotation)."""
    key_id = key_id or secrets.token_hex(8)
    return NewKey(key_id=key_id, secret=f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}")


def parse_managed(presented: str) -> str | None:
    """The public id of a well-formed managed key, or None."""
    match = _MANAGED.fullmatch(presented)
    return match.group(1) if match else None


def well_formed(presented: str) -> bool:
    """Cheap checks before any hashing: bounded, non-empty, printable ASCII only."""
    return 0 < len(presented) <= MAX_PRESENTED_LENGTH and presented.isascii() and presented.isprintable()


class KeyHasher:
    """HMAC-SHA256 under the API_KEY_SALT pepper, one purpose per use.

    ``previous`` is the hasher of the rotated-out salt during its grace period: stored hashes made
    under it still authenticate (and are re-hashed under the current salt on that use).
    """

    def __init__(self, pepper: bytes, *, previous: Graced[KeyHasher] | None = None) -> None:
        if len(pepper) < 16:
            raise ValueError("API_KEY_SALT is too short")
        self._pepper = pepper
        self.previous = previous

    def _mac(self, purpose: bytes, value: str) -> bytes:
        return hmac.new(self._pepper, purpose + value.encode("ascii"), hashlib.sha256).digest()

    def managed(self, presented: str) -> str:
        """The stored hash of a managed key (hex)."""
        return self._mac(_PURPOSE_MANAGED, presented).hex()

    def cache_key(self, presented: str) -> bytes:
        """Where a verified key is cached: a MAC of the WHOLE key, never a prefix of it."""
        return self._mac(_PURPOSE_CACHE, presented)

    def static(self, presented: str) -> bytes:
        return self._mac(_PURPOSE_STATIC, presented)


def matches(stored_hex: str | None, candidate_hex: str) -> bool:
    if stored_hex is None:
        return False
    return hmac.compare_digest(stored_hex.encode("ascii"), candidate_hex.encode("ascii"))


@dataclass(frozen=True, slots=True)
class StaticKey:
    digest: bytes
    principal: Principal


class StaticKeys:
    """API_KEYS and ML_API_KEYS, held only as keyed hashes, matched in constant time."""

    def __init__(self, hasher: KeyHasher, *, app_keys: list[str], ml_keys: list[str]) -> None:
        self.hasher = hasher
        entries: list[StaticKey] = []
        for keys, role, scopes in (
            (app_keys, Role.USER, STATIC_APP_SCOPES),
            (ml_keys, Role.SERVICE, STATIC_ML_SCOPES),
        ):
            for key in keys:
                if not well_formed(key):
                    raise ValueError("static API keys are printable ASCII, at most 256 characters")
                digest = hasher.static(key)
                key_id = "static:" + digest.hex()[:12]
                entries.append(
                    StaticKey(
                        digest,
                        Principal(
                            subject=key_id,
                            role=role,
                            method=AuthMethod.STATIC_KEY,
                            scopes=scope_permissions(scopes),
                            api_key_id=key_id,
                        ),
                    )
                )
        self.entries = tuple(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, presented: str) -> Principal | None:
        """The principal of a configured static key; every entry is compared, no early exit."""
        if not self.entries or not well_formed(presented):
            return None
        digest = self.hasher.static(presented)
        found: Principal | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        return found


def split_static(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]
