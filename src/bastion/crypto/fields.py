# SPDX-License-Identifier: Apache-2.0
"""Field encryption: AES-256-GCM under a keyring of versioned keys, bound to where the value lives.

A stored value looks like ``v2.<kid>.<base64url(nonce || ciphertext || tag)>``. The key id says
which key sealed it, so keys rotate without a flag day: the newest key seals, every listed key
opens, and ``needs_rotation`` tells a re-encryption job (``bastion db rekey``) what is still under
an old key.

The AES key of ``v2`` values is derived (HKDF-SHA256) from the configured key and the environment
name, so a production database can never be opened by a development or test deployment that was
given the same DATABASE_ENCRYPTION_KEY. ``v1`` values, sealed by earlier versions directly under
the configured key, still open; ``bastion db rekey`` re-seals them as ``v2``.

Values that must be found by equality without being stored in the clear (e-mail addresses) also
get a blind index: ``<kid>.<HMAC-SHA256 under a key derived for that purpose>``, one per key id,
so a lookup tries each configured key's index and a rekey moves rows to the newest.

The associated data names the table, column and row, so a ciphertext copied into another row or
column by someone with write access to the database fails to open instead of showing one user's
journal to another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.crypto.material import parse_encryption_keys
from bastion.errors import BastionError
from bastion.observability.logging import get_logger

if TYPE_CHECKING:
    from bastion.settings import Settings

VERSION = "v2"  # keys derived per environment
LEGACY_VERSION = "v1"  # sealed directly under the configured key: opened, never written
VERSIONS = (VERSION, LEGACY_VERSION)
NONCE_BYTES = 12
_log = get_logger("bastion.crypto")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


class DecryptionError(Exception):
    """A stored value could not be opened: unknown key, tampering, or moved from elsewhere."""


class UnreadableStoredValue(BastionError):
    """A stored value failed to open: the client learns nothing more, the operator's log says where."""

    status_code = 500
    code = "stored_data_unreadable"
    default_message = "Stored data could not be read; the operator has been alerted"


def context(table: str, column: str, row_id: str) -> bytes:
    """The associated data binding a value to its place."""
    for part in (table, column, row_id):
        if "|" in part:
            raise ValueError("context parts may not contain '|'")
    return f"bastion|{table}|{column}|{row_id}".encode()


def derive_key(key: bytes, *, purpose: str, environment: str) -> bytes:
    """A 256-bit key for one purpose in one environment, from a configured key."""
    info = f"bastion|{purpose}|{environment}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


class FieldCipher:
    """Seals and opens text fields with the keyring from DATABASE_ENCRYPTION_KEY (newest key first)."""

    def __init__(self, keys: Mapping[str, bytes], *, environment: str) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        if not environment or "|" in environment:
            raise ValueError("an environment name is required")
        self.environment = environment
        self._ciphers = {
            kid: AESGCM(derive_key(key, purpose="field-encryption", environment=environment))
            for kid, key in keys.items()
        }
        self._legacy = {kid: AESGCM(key) for kid, key in keys.items()}
        self._index_keys = {
            kid: derive_key(key, purpose="blind-index", environment=environment) for kid, key in keys.items()
        }
        self.active_kid = next(iter(keys))

    @classmethod
    def from_setting(cls, raw: str, *, environment: str) -> FieldCipher:
        return cls(parse_encryption_keys(raw), environment=environment)

    @classmethod
    def for_settings(cls, settings: Settings) -> FieldCipher:
        """The cipher of a deployment: DATABASE_ENCRYPTION_KEY under its ENVIRONMENT."""
        raw = settings.secret("DATABASE_ENCRYPTION_KEY") or ""
        return cls.from_setting(raw, environment=str(settings.environment))

    @property
    def kids(self) -> tuple[str, ...]:
        """The configured key ids, newest first."""
        return tuple(self._ciphers)

    def encrypt(self, plaintext: str, *, aad: bytes, kid: str | None = None) -> str:
        """Seal under the active key, or under ``kid`` (the key check seals one value per key)."""
        kid = self.active_kid if kid is None else kid
        nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond any one key's use here
        sealed = self._ciphers[kid].encrypt(nonce, plaintext.encode("utf-8"), aad)
        return f"{VERSION}.{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, aad: bytes) -> str:
        version, kid, body = self._split(token)
        cipher = (self._ciphers if version == VERSION else self._legacy).get(kid)
        if version not in VERSIONS or cipher is None:
            raise DecryptionError("unknown format or key")
        try:
            # base64.urlsafe_b64decode's own steps, without its two Python layers (a history of
            # messages opens dozens of values per request)
            raw = binascii.a2b_base64(body.encode("ascii").translate(_FROM_URLSAFE))
            if len(raw) < NONCE_BYTES + 16:
                raise DecryptionError("truncated value")
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise DecryptionError("value failed authentication") from exc

    def seal(self, plaintext: str, *, table: str, column: str, row_id: str) -> str:
        """Seal a value bound to its table, column and row."""
        return self.encrypt(plaintext, aad=context(table, column, row_id))

    def open(self, token: str, *, table: str, column: str, row_id: str) -> str:
        """Open a value sealed by ``seal`` for the same place.

        A value that fails (tampered, truncated, moved from another row or column, sealed under a
        key no longer configured) is logged for the operator with its place and key id, and the
        request ends with a 500 error shape that says nothing more: never a wrong plaintext.
        """
        return self.open_many(((token, row_id),), table=table, column=column)[0]

    def open_many(self, sealed: Iterable[tuple[str, str]], *, table: str, column: str) -> list[str]:
        """``open`` for values of one column: ``(token, row id)`` pairs, opened in their order
        (a chat message's history is dozens of them; the place's common part is encoded once)."""
        prefix = context(table, column, "")
        opened: list[str] = []
        for token, row_id in sealed:
            if "|" in row_id:
                raise ValueError("context parts may not contain '|'")
            try:
                opened.append(self.decrypt(token, aad=prefix + row_id.encode()))
            except DecryptionError as exc:
                kid = token.split(".", 2)[1] if token.count(".") >= 2 else None
                _log.error(
                    "stored_value_unreadable",
                    table=table,
                    column=column,
                    row_id=row_id,
                    kid=kid,
                    reason=str(exc),
                )
                raise UnreadableStoredValue() from exc
        return opened

    def blind_index(self, value: str, *, purpose: str, kid: str | None = None) -> str:
        """The keyed index of ``value`` under the active key (or ``kid``), as ``<kid>.<hex>``."""
        kid = self.active_kid if kid is None else kid
        digest = hmac.new(self._index_keys[kid], f"{purpose}|{value}".encode(), hashlib.sha256).hexdigest()
        return f"{kid}.{digest}"

    def blind_indexes(self, value: str, *, purpose: str) -> tuple[str, ...]:
        """The index of ``value`` under every configured key: what a lookup must match."""
        return tuple(self.blind_index(value, purpose=purpose, kid=kid) for kid in self.kids)

    def needs_rotation(self, token: str) -> bool:
        """True when the value was sealed by a key other than the active one, or in the old format."""
        version, kid, _ = self._split(token)
        return version != VERSION or kid != self.active_kid

    def index_needs_rotation(self, index: str) -> bool:
        return not index.startswith(f"{self.active_kid}.")

    def rotate(self, token: str, *, aad: bytes) -> str:
        """Re-seal under the active key (no-op for values already under it)."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)

    @staticmethod
    def _split(token: str) -> tuple[str, str, str]:
        parts = token.split(".", 2)
        if len(parts) != 3:
            raise DecryptionError("not an encrypted value")
        return parts[0], parts[1], parts[2]
