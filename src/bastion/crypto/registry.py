# SPDX-License-Identifier: Apache-2.0
"""Every column that holds a value sealed with the field cipher, in one list.

The key check (``crypto/keycheck.py``) searches these columns for a key id still in use, and
``bastion db rekey`` walks them to re-seal what an older key (or the older format) sealed. A
feature that stores a new sealed column declares it here and seals and opens it through its
``SealedField``, so the binding of a value to its place (table, column, row) is written once.

Columns are named as strings, not models, so this low-level module depends on no feature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bastion.crypto.fields import FieldCipher


@dataclass(frozen=True, slots=True)
class SealedField:
    """A sealed column: where it lives and what its values are bound to."""

    table: str
    #: the column holding the ciphertext
    column: str
    #: the name the associated data uses for it (``context(table, name, row id)``)
    name: str
    #: the columns whose values, joined by ':', are the row id in the associated data
    id_columns: tuple[str, ...] = ("id",)
    #: a blind index kept beside the value, for lookups by equality (``None``: not looked up)
    index_column: str | None = None

    @property
    def purpose(self) -> str:
        """What the blind index is keyed for (its values differ from any other column's)."""
        return f"{self.table}.{self.name}"

    def seal(self, cipher: FieldCipher, value: str, row_id: str) -> str:
        return cipher.seal(value, table=self.table, column=self.name, row_id=row_id)

    def open(self, cipher: FieldCipher, token: str, row_id: str) -> str:
        return cipher.open(token, table=self.table, column=self.name, row_id=row_id)

    def open_many(self, cipher: FieldCipher, sealed: Iterable[tuple[str, str]]) -> list[str]:
        """``open`` for many rows: ``(token, row id)`` pairs, in their order."""
        return cipher.open_many(sealed, table=self.table, column=self.name)

    def index(self, cipher: FieldCipher, value: str) -> str:
        """The blind index of ``value`` under the active key (what a new row stores)."""
        return cipher.blind_index(value, purpose=self.purpose)

    def lookup(self, cipher: FieldCipher, value: str) -> tuple[str, ...]:
        """The blind indexes a stored ``value`` may carry: one per configured key."""
        return cipher.blind_indexes(value, purpose=self.purpose)


CHAT_SESSION_TITLE = SealedField("chat_sessions", "title_ciphertext", "title")
CHAT_MESSAGE_CONTENT = SealedField("chat_messages", "content_ciphertext", "content", ("session_id", "id"))
JOURNAL_TITLE = SealedField("journal_entries", "title_ciphertext", "title")
JOURNAL_CONTENT = SealedField("journal_entries", "content_ciphertext", "content")
USER_EMAIL = SealedField("users", "email_ciphertext", "email", index_column="email_index")
INVITATION_EMAIL = SealedField("invitations", "email_ciphertext", "email")
API_KEY_NAME = SealedField("api_keys", "name_ciphertext", "name")
API_KEY_LAST_IP = SealedField("api_keys", "last_used_ip_ciphertext", "last_used_ip")
# Rotated SESSION_SECRET, CSRF_SECRET and API_KEY_SALT values (bastion.rotation).
SECRET_VERSION = SealedField("secret_versions", "sealed_value", "sealed_value")
# Ed25519 private keys that sign model replies (bastion.crypto.content_keys), PEM.
CONTENT_SIGNING_KEY = SealedField("content_signing_keys", "private_ciphertext", "private_key", ("kid",))

SEALED_FIELDS: tuple[SealedField, ...] = (
    USER_EMAIL,
    INVITATION_EMAIL,
    API_KEY_NAME,
    API_KEY_LAST_IP,
    CHAT_SESSION_TITLE,
    CHAT_MESSAGE_CONTENT,
    JOURNAL_TITLE,
    JOURNAL_CONTENT,
    SECRET_VERSION,
    CONTENT_SIGNING_KEY,
)
