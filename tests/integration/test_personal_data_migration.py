# SPDX-License-Identifier: Apache-2.0
"""Upgrading a database that holds e-mail addresses and key names in the clear seals them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bastion.crypto import material
from bastion.crypto.fields import FieldCipher
from bastion.crypto.registry import API_KEY_LAST_IP, API_KEY_NAME, INVITATION_EMAIL, USER_EMAIL
from bastion.db import migrate

NOW = {"now": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}


async def execute(url: str, *statements: str) -> list[dict[str, object]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            rows: list[dict[str, object]] = []
            for statement in statements:
                result = await connection.execute(text(statement), NOW if ":now" in statement else {})
                if result.returns_rows:
                    rows += [dict(row) for row in result.mappings().all()]
            return rows
    finally:
        await engine.dispose()


async def test_upgrade_seals_what_earlier_versions_stored_in_the_clear(database_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url, "0007")
    await execute(
        database_url,
        "INSERT INTO users (id, email, password_hash, role, is_active, token_version, created_at, updated_at)"
        " VALUES ('u1', 'ana@example.com', 'x', 'user', true, 1, :now, :now)",
        "INSERT INTO invitations (id, token_hash, email, created_at, expires_at)"
        " VALUES ('i1', 'h1', 'invitee@example.com', :now, :now)",
        "INSERT INTO api_keys (id, user_id, name, role, scopes, secret_hash, created_at, last_used_ip)"
        " VALUES ('k1', 'u1', 'Ana''s phone', 'user', 'chat', 'h', :now, '203.0.113.7')",
    )
    # Without the deployment's key nothing changes: a clear refusal, the database still at 0007.
    with pytest.raises(RuntimeError, match="bastion db upgrade"):
        await asyncio.to_thread(migrate.upgrade, database_url)
    cipher = FieldCipher.from_setting(material.encryption_key(), environment="test")
    await asyncio.to_thread(migrate.upgrade, database_url, cipher=cipher)

    users = await execute(database_url, "SELECT * FROM users")
    keys = await execute(database_url, "SELECT * FROM api_keys")
    invitations = await execute(database_url, "SELECT * FROM invitations")
    dumped = json.dumps([*users, *keys, *invitations], default=str)
    for plain in ("ana@example.com", "invitee@example.com", "Ana's phone", "203.0.113.7"):
        assert plain not in dumped
    assert "email" not in users[0] and "name" not in keys[0] and "email" not in invitations[0]
    assert USER_EMAIL.open(cipher, str(users[0]["email_ciphertext"]), "u1") == "ana@example.com"
    assert users[0]["email_index"] in USER_EMAIL.lookup(cipher, "ana@example.com")
    assert (
        INVITATION_EMAIL.open(cipher, str(invitations[0]["email_ciphertext"]), "i1") == "invitee@example.com"
    )
    assert API_KEY_NAME.open(cipher, str(keys[0]["name_ciphertext"]), "k1") == "Ana's phone"
    assert API_KEY_LAST_IP.open(cipher, str(keys[0]["last_used_ip_ciphertext"]), "k1") == "203.0.113.7"
    # The key's owner survived the rebuild of the users table (no cascade on the way).
    assert keys[0]["user_id"] == "u1"

    await asyncio.to_thread(migrate.downgrade, database_url, "0007", cipher=cipher)
    restored = await execute(
        database_url, "SELECT email FROM users", "SELECT name, last_used_ip FROM api_keys"
    )
    assert restored == [{"email": "ana@example.com"}, {"name": "Ana's phone", "last_used_ip": "203.0.113.7"}]


async def test_an_empty_database_migrates_without_a_key(database_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, database_url)
    await asyncio.to_thread(migrate.downgrade, database_url, "0007")
    await asyncio.to_thread(migrate.upgrade, database_url)
