# SPDX-License-Identifier: Apache-2.0
"""The startup key check, on SQLite and on the real PostgreSQL: a DATABASE_ENCRYPTION_KEY that
cannot open the stored data is refused by key id before any read can fail."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.app import create_app
from bastion.auth.keyring import seal
from bastion.auth.models import SigningKey
from bastion.chat.models import ChatSession
from bastion.crypto.fields import FieldCipher, context
from bastion.crypto.keycheck import EncryptionKeyRefused, check_encryption_keys
from bastion.crypto.material import parse_encryption_keys
from bastion.db.engine import create_engine
from bastion.db.types import utcnow
from tests.conftest import SettingsFactory, serve_app


def key(kid: str) -> str:
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}"


@pytest.fixture
async def engine(migrated_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_the_right_key_passes_and_is_recorded_once(engine: AsyncEngine) -> None:
    setting = key("k1")
    first = await check_encryption_keys(engine, FieldCipher.from_setting(setting, environment="test"))
    assert first is not None and first.recorded == ["k1"] and first.verified == []
    again = await check_encryption_keys(engine, FieldCipher.from_setting(setting, environment="test"))
    assert again is not None and again.recorded == [] and again.verified == ["k1"]


async def test_a_different_key_under_the_same_kid_is_refused_by_kid(engine: AsyncEngine) -> None:
    await check_encryption_keys(engine, FieldCipher.from_setting(key("k1"), environment="test"))
    wrong = key("k1")
    with pytest.raises(EncryptionKeyRefused) as refused:
        await check_encryption_keys(engine, FieldCipher.from_setting(wrong, environment="test"))
    assert refused.value.different == ["k1"] and refused.value.missing == []
    line = refused.value.one_line()
    assert "'k1'" in line and "DATABASE_ENCRYPTION_KEY" in line and "\n" not in line
    assert wrong.split(":")[1] not in line


async def test_a_missing_old_kid_that_data_still_uses_is_refused_by_kid(engine: AsyncEngine) -> None:
    old = key("old_1")  # '_' is a LIKE wildcard: the data search must match it literally
    await check_encryption_keys(engine, FieldCipher.from_setting(old, environment="test"))
    sealed = seal(b"pem", keys=parse_encryption_keys(old), context="signing_key:rot")
    async with engine.begin() as connection:
        await connection.execute(
            insert(SigningKey).values(
                kid="rot", algorithm="EdDSA", source="rotated", private_ciphertext=sealed, created_at=utcnow()
            )
        )
    with pytest.raises(EncryptionKeyRefused) as refused:
        await check_encryption_keys(engine, FieldCipher.from_setting(key("new"), environment="test"))
    assert refused.value.missing == ["old_1"] and refused.value.different == []
    assert "'old_1'" in refused.value.one_line()


async def test_a_removed_kid_that_no_data_uses_is_retired(engine: AsyncEngine) -> None:
    await check_encryption_keys(engine, FieldCipher.from_setting(key("old"), environment="test"))
    report = await check_encryption_keys(engine, FieldCipher.from_setting(key("new"), environment="test"))
    assert report is not None and report.retired == ["old"] and report.recorded == ["new"]


async def test_rotation_keeps_the_old_kid_and_records_the_new_one(engine: AsyncEngine) -> None:
    old = key("old")
    await check_encryption_keys(engine, FieldCipher.from_setting(old, environment="test"))
    rotated = FieldCipher.from_setting(f"{key('new')},{old}", environment="test")
    report = await check_encryption_keys(engine, rotated)
    assert report is not None and report.recorded == ["new"] and report.verified == ["old"]
    again = await check_encryption_keys(engine, rotated)
    assert again is not None and again.verified == ["new", "old"] and again.recorded == []


async def test_concurrent_first_starts_agree_on_one_check_value(engine: AsyncEngine) -> None:
    setting = key("k1")
    reports = await asyncio.gather(
        *(
            check_encryption_keys(engine, FieldCipher.from_setting(setting, environment="test"))
            for _ in range(4)
        )
    )
    assert all(report is not None for report in reports)
    again = await check_encryption_keys(engine, FieldCipher.from_setting(setting, environment="test"))
    assert again is not None and again.verified == ["k1"]


async def test_an_unmigrated_database_is_not_checked(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert (
            await check_encryption_keys(engine, FieldCipher.from_setting(key("k1"), environment="test"))
            is None
        )
    finally:
        await engine.dispose()


async def test_the_app_starts_with_the_right_key_and_refuses_a_different_one_in_one_line(
    make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    right = key("k1")
    async with serve_app(
        make_settings(DATABASE_URL=migrated_database_url, DATABASE_ENCRYPTION_KEY=right)
    ) as (
        _app,
        http,
    ):
        assert (await http.get("/health")).status_code == 200
    app = create_app(make_settings(DATABASE_URL=migrated_database_url, DATABASE_ENCRYPTION_KEY=key("k1")))
    messages: list[dict[str, object]] = []
    incoming: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    await incoming.put({"type": "lifespan.startup"})

    async def send(message: dict[str, object]) -> None:
        messages.append(message)

    with pytest.raises(EncryptionKeyRefused):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, incoming.get, send)  # type: ignore[arg-type]
    [failed] = messages
    assert failed["type"] == "lifespan.startup.failed"
    text = str(failed["message"])
    assert "'k1'" in text and "Traceback" not in text and "\n" not in text


async def test_the_app_starts_after_rotation_and_records_the_new_kid(
    make_settings: SettingsFactory, migrated_database_url: str
) -> None:
    old, new = key("old"), key("new")
    for setting in (old, f"{new},{old}"):
        settings = make_settings(DATABASE_URL=migrated_database_url, DATABASE_ENCRYPTION_KEY=setting)
        async with serve_app(settings) as (_app, http):
            assert (await http.get("/health")).status_code == 200
    engine = create_engine(migrated_database_url)
    try:
        report = await check_encryption_keys(
            engine, FieldCipher.from_setting(f"{new},{old}", environment="test"), record=False
        )
    finally:
        await engine.dispose()
    assert report is not None and report.verified == ["new", "old"] and report.recorded == []


async def test_data_sealed_before_check_values_must_open_with_a_new_kid(engine: AsyncEngine) -> None:
    """After an upgrade the first start records each key id: a wrong key must not become the reference."""
    right = FieldCipher.from_setting(key("k1"), environment="test")
    async with engine.begin() as connection:
        await connection.execute(
            insert(ChatSession).values(
                id="s" * 24,
                owner_api_key_id="static:abc",
                title_ciphertext=right.encrypt("my week", aad=context("chat_sessions", "title", "s" * 24)),
                created_at=utcnow(),
                last_active_at=utcnow(),
            )
        )
    with pytest.raises(EncryptionKeyRefused) as refused:
        await check_encryption_keys(engine, FieldCipher.from_setting(key("k1"), environment="test"))
    assert refused.value.different == ["k1"]
    report = await check_encryption_keys(engine, right)
    assert report is not None and report.recorded == ["k1"]
