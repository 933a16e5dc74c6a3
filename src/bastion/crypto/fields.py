# SPDX-License-Identifier: Apache-2.0
"""Field encryption: AES-256-GCM under a keyring of versioned keys, bound to where the value lives.

A stored value looks like ``v1.<kid>.<base64url(nonce || ciphertext || tag)>``. The key id says
which key sealed it, so keys rotate without a flag day: the newest key seals, every listed key
opens, and ``needs_rotation`` tells a re-encryption job what is still under an old key.

The associated data names the table, column and row, so a ciphertext copied into another row or
column by someone with write access to the database fails to open instead of showing one user's
journal to another.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.crypto.material import parse_encryption_keys

VERSION = "v1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A stored value could not be opened: unknown key, tampering, or moved from elsewhere."""


def context(table: str, column: str, row_id: str) -> bytes:
    """The associated data binding a value to its place."""
    for part in (table, column, row_id):
        if "|" in part:
            raise ValueError("context parts may not contain '|'")
    return f"bastion|{table}|{column}|{row_id}".encode()


class FieldCipher:
    """Seals and opens text fields with the keyring from DATABASE_ENCRYPTION_KEY (newest key first)."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active_kid = next(iter(keys))

    @classmethod
    def from_setting(cls, raw: str) -> FieldCipher:
        return cls(parse_encryption_keys(raw))

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
        cipher = self._ciphers.get(kid)
        if version != VERSION or cipher is None:
            raise DecryptionError("unknown format or key")
        try:
            raw = base64.urlsafe_b64decode(body)
            if len(raw) < NONCE_BYTES + 16:
                raise DecryptionError("truncated value")
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise DecryptionError("value failed authentication") from exc

    def needs_rotation(self, token: str) -> bool:
        """True when the value was sealed by a key other than the active one."""
        return self._split(token)[1] != self.active_kid

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
