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
from bastion.errors import BastionError
from bastion.observability.logging import get_logger

VERSION = "v1"
NONCE_BYTES = 12
_log = get_logger("bastion.crypto")


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

    def seal(self, plaintext: str, *, table: str, column: str, row_id: str) -> str:
        """Seal a value bound to its table, column and row."""
        return self.encrypt(plaintext, aad=context(table, column, row_id))

    def open(self, token: str, *, table: str, column: str, row_id: str) -> str:
        """Open a value sealed by ``seal`` for the same place.

        A value that fails (tampered, truncated, moved from another row or column, sealed under a
        key no longer configured) is logged for the operator with its place and key id, and the
        request ends with a 500 error shape that says nothing more: never a wrong plaintext.
        """
        try:
            return self.decrypt(token, aad=context(table, column, row_id))
        except DecryptionError as exc:
            kid = token.split(".", 2)[1] if token.count(".") >= 2 else None
            _log.error(
                "stored_value_unreadable", table=table, column=column, row_id=row_id, kid=kid, reason=str(exc)
            )
            raise UnreadableStoredValue() from exc

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
