# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import base64

import pytest

from bastion.crypto import material
from bastion.crypto.fields import DecryptionError, FieldCipher, context

AAD = context("journal_entries", "content", "row-1")


def cipher(*raw: str) -> FieldCipher:
    return FieldCipher.from_setting(",".join(raw))


def test_round_trip_with_unicode_and_fresh_nonces() -> None:
    fields = cipher(material.encryption_key())
    text = "Dear diary — today I felt 😌 and wrote 10k chars " * 50
    first, second = fields.encrypt(text, aad=AAD), fields.encrypt(text, aad=AAD)
    assert first != second  # random nonces: equal plaintexts do not look equal at rest
    assert fields.decrypt(first, aad=AAD) == text
    assert text[:20] not in first


def test_value_moved_to_another_row_or_column_fails() -> None:
    fields = cipher(material.encryption_key())
    token = fields.encrypt("private", aad=AAD)
    for other in (
        context("journal_entries", "content", "row-2"),
        context("journal_entries", "title", "row-1"),
        context("chat_messages", "content", "row-1"),
    ):
        with pytest.raises(DecryptionError):
            fields.decrypt(token, aad=other)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
        lambda t: t[: len(t) // 2],
        lambda t: "v2" + t[2:],
        lambda t: "v1.nokey." + t.split(".", 2)[2],
        lambda t: "garbage",
        lambda t: "v1.x.!!!!",
        lambda t: "v1." + t.split(".", 2)[1] + "." + base64.urlsafe_b64encode(b"short").decode(),
    ],
)
def test_tampered_values_fail_authentication(mangle) -> None:  # type: ignore[no-untyped-def]
    fields = cipher(material.encryption_key())
    token = fields.encrypt("secret", aad=AAD)
    with pytest.raises(DecryptionError):
        fields.decrypt(mangle(token), aad=AAD)


def test_rotation_keeps_old_values_readable_and_reseals() -> None:
    old_key = material.encryption_key()
    old = cipher(old_key)
    token = old.encrypt("kept", aad=AAD)
    new_key = material.encryption_key()
    rotated = cipher(new_key, old_key)
    assert rotated.decrypt(token, aad=AAD) == "kept"
    assert rotated.needs_rotation(token)
    resealed = rotated.rotate(token, aad=AAD)
    assert not rotated.needs_rotation(resealed)
    assert rotated.rotate(resealed, aad=AAD) == resealed
    assert cipher(new_key).decrypt(resealed, aad=AAD) == "kept"
    with pytest.raises(DecryptionError):
        cipher(new_key).decrypt(token, aad=AAD)  # the old key was retired


def test_context_parts_cannot_be_confused() -> None:
    with pytest.raises(ValueError):
        context("a|b", "c", "d")


def test_a_named_older_key_seals_and_any_listed_key_opens() -> None:
    fields = cipher(
        "new:" + material.encryption_key().split(":")[1], "old:" + material.encryption_key().split(":")[1]
    )
    assert fields.kids == ("new", "old")
    token = fields.encrypt("check", aad=AAD, kid="old")
    assert token.startswith("v1.old.")
    assert fields.decrypt(token, aad=AAD) == "check"
    assert fields.needs_rotation(token)
