# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import base64

import pytest

from bastion.crypto import material
from bastion.crypto.fields import DecryptionError, FieldCipher, UnreadableStoredValue, context

AAD = context("journal_entries", "content", "row-1")


def cipher(*raw: str) -> FieldCipher:
    return FieldCipher.from_setting(",".join(raw), environment="test")


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
        lambda t: "v1" + t[2:],  # the same body read as the older format
        lambda t: "v1.nokey." + t.split(".", 2)[2],
        lambda t: "garbage",
        lambda t: "v1.x.!!!!",
        lambda t: "v1." + t.split(".", 2)[1] + "." + base64.urlsafe_b64encode(b"short").decode(),
        lambda t: t[:-4] + "é" + t[-3:],  # not base64's alphabet, nor ASCII
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
    with pytest.raises(ValueError):
        cipher(material.encryption_key()).open_many([("v2.k.x", "row|1")], table="t", column="c")


def test_many_values_of_a_column_open_in_order_each_bound_to_its_row() -> None:
    fields = cipher(material.encryption_key())
    rows = [(f"s:{n}", f"message {n} — ünïcode {n}") for n in range(30)]
    sealed = [
        (fields.seal(text, table="chat_messages", column="content", row_id=row), row) for row, text in rows
    ]
    opened = fields.open_many(sealed, table="chat_messages", column="content")
    assert opened == [text for _, text in rows]
    assert opened == [
        fields.open(token, table="chat_messages", column="content", row_id=row) for token, row in sealed
    ]
    assert fields.open_many([], table="chat_messages", column="content") == []


def test_one_value_that_fails_among_many_is_refused_never_a_wrong_plaintext() -> None:
    fields = cipher(material.encryption_key())
    sealed = [
        (fields.seal(f"text {n}", table="chat_messages", column="content", row_id=f"s:{n}"), f"s:{n}")
        for n in range(3)
    ]
    swapped = [sealed[0], (sealed[2][0], sealed[1][1]), sealed[2]]  # row 2's value copied into row 1
    with pytest.raises(UnreadableStoredValue):
        fields.open_many(swapped, table="chat_messages", column="content")


def test_a_named_older_key_seals_and_any_listed_key_opens() -> None:
    fields = cipher(
        "new:" + material.encryption_key().split(":")[1], "old:" + material.encryption_key().split(":")[1]
    )
    assert fields.kids == ("new", "old")
    token = fields.encrypt("check", aad=AAD, kid="old")
    assert token.startswith("v2.old.")
    assert fields.decrypt(token, aad=AAD) == "check"
    assert fields.needs_rotation(token)


def legacy_seal(setting: str, plaintext: str, aad: bytes) -> str:
    """A value as earlier versions sealed it: ``v1``, directly under the configured key."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from bastion.crypto.material import parse_encryption_keys

    kid, key = next(iter(parse_encryption_keys(setting).items()))
    nonce = os.urandom(12)
    body = base64.urlsafe_b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), aad)).decode()
    return f"v1.{kid}.{body}"


def test_values_of_earlier_versions_open_and_are_due_for_rotation() -> None:
    setting = material.encryption_key()
    fields = cipher(setting)
    old = legacy_seal(setting, "written last year", AAD)
    assert fields.decrypt(old, aad=AAD) == "written last year"
    assert fields.needs_rotation(old)  # under the active key, but in the older format
    rotated = fields.rotate(old, aad=AAD)
    assert rotated.startswith("v2.") and not fields.needs_rotation(rotated)
    assert fields.decrypt(rotated, aad=AAD) == "written last year"


def test_another_environment_cannot_open_values_even_with_the_same_key() -> None:
    setting = material.encryption_key()
    production = FieldCipher.from_setting(setting, environment="production")
    development = FieldCipher.from_setting(setting, environment="development")
    token = production.encrypt("patient notes", aad=AAD)
    assert production.decrypt(token, aad=AAD) == "patient notes"
    with pytest.raises(DecryptionError):
        development.decrypt(token, aad=AAD)
    index = production.blind_index("ana@example.com", purpose="users.email")
    assert index not in development.blind_indexes("ana@example.com", purpose="users.email")
    with pytest.raises(ValueError):
        FieldCipher.from_setting(setting, environment="")


def test_blind_indexes_find_equal_values_under_every_key_and_nothing_else() -> None:
    new, old = (f"{kid}:" + material.encryption_key().split(":")[1] for kid in ("new", "old"))
    before = cipher(old)
    after = cipher(new, old)
    stored = before.blind_index("ana@example.com", purpose="users.email")
    assert stored.startswith("old.") and "ana" not in stored
    # After the key rotation a lookup matches rows indexed under either key.
    assert stored in after.blind_indexes("ana@example.com", purpose="users.email")
    assert after.index_needs_rotation(stored)
    assert after.blind_index("ana@example.com", purpose="users.email").startswith("new.")
    assert stored not in after.blind_indexes("ana@example.org", purpose="users.email")
    # The purpose is keyed in: the same text in another column has another index.
    assert stored != before.blind_index("ana@example.com", purpose="invitations.email")


def test_a_dotted_key_id_is_refused_since_values_separate_their_parts_with_dots() -> None:
    body = material.encryption_key().split(":", 1)[1]
    with pytest.raises(ValueError, match="key ids"):
        cipher(f"prod.2026:{body}")
    assert cipher(f"prod-2026:{body}").active_kid == "prod-2026"
