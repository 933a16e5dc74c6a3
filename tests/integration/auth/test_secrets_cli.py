# SPDX-License-Identifier: Apache-2.0
"""`bastion secrets rotate|status` and `bastion check` as real processes: refusals are one line."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from bastion.audit.events import AuditEvent
from bastion.audit.models import AuditRecord
from bastion.audit.service import AuditService
from bastion.crypto import material
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.types import utcnow
from bastion.rotation.models import SecretVersion
from bastion.rotation.service import rotate
from bastion.rotation.store import RotationRefused
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import identity_settings
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli

# Every process of a test shares these values (the test environment would otherwise make new ones).
SECRETS = material.generate_all("EdDSA")


def refused(result: Any, *phrases: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0]


async def cli(env: dict[str, str], *args: str) -> Any:
    return await asyncio.to_thread(run_cli, env, *args)


async def test_refusals_are_one_line(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    env = cli_env(settings, **SECRETS)
    refused(await cli(env, "secrets", "rotate", "NOPE"), "unknown secret", "SESSION_SECRET")
    refused(await cli(env, "secrets", "rotate", "SECRET_KEY"), "HS256", "rotate-signing")
    refused(
        await cli(env, "secrets", "rotate", "CSRF_SECRET", "--emergency", "--grace-days", "3"), "--emergency"
    )
    # Not migrated yet: the table is missing.
    refused(await cli(env, "secrets", "rotate", "CSRF_SECRET"), "bastion db upgrade")
    refused(await cli(env, "secrets", "status"), "bastion db upgrade")


async def test_missing_encryption_key_is_refused_before_any_change(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    unsealable = settings.model_copy(update={"database_encryption_key": None})
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        sessionmaker = create_sessionmaker(engine)
        with pytest.raises(RotationRefused, match="DATABASE_ENCRYPTION_KEY"):
            await rotate(
                sessionmaker,
                unsealable,
                "SESSION_SECRET",
                grace=timedelta(days=7),
                audit=AuditService(sessionmaker=sessionmaker),
            )
        async with sessionmaker() as session:
            assert (await session.scalars(select(SecretVersion))).all() == []
    finally:
        await engine.dispose()


async def test_rotate_status_and_the_deploy_check(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(migrate.upgrade, url)
    env = cli_env(settings, **SECRETS)

    done = await cli(env, "secrets", "rotate", "session_secret", "--grace-days", "3")
    assert done.returncode == 0, done.stderr
    assert "rotated SESSION_SECRET" in done.stdout and "verifies until" in done.stdout
    emergency = await cli(env, "secrets", "rotate", "API_KEY_SALT", "--emergency")
    assert emergency.returncode == 0, emergency.stderr
    assert "no longer verifies" in emergency.stdout and "ended every session" in emergency.stdout

    shown = await cli(env, "secrets", "status", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    by_name = {item["name"]: item for item in body["secrets"]}
    assert set(by_name) == {"SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT", "JWT_PRIVATE_KEYS"}
    assert by_name["SESSION_SECRET"]["source"] == "rotated"
    assert by_name["SESSION_SECRET"]["previous_verifies_until"] is not None
    assert by_name["API_KEY_SALT"]["previous_verifies_until"] is None
    assert by_name["CSRF_SECRET"]["source"] == "settings" and body["warnings"] == []
    text = await cli(env, "secrets", "status")
    for output in (shown.stdout, text.stdout, done.stdout, emergency.stdout):
        assert not any(value in output for value in SECRETS.values())

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:  # CSRF_SECRET first seen 100 days ago
            await connection.execute(
                update(SecretVersion)
                .where(SecretVersion.name == "CSRF_SECRET")
                .values(created_at=utcnow() - timedelta(days=100))
            )
        async with create_sessionmaker(engine)() as session:
            events = (await session.scalars(select(AuditRecord))).all()
    finally:
        await engine.dispose()
    rotations = [r for r in events if r.event_type == AuditEvent.SECRET_ROTATED]
    assert sorted(r.target_id or "" for r in rotations) == ["API_KEY_SALT", "SESSION_SECRET"]
    assert any(r.event_type == AuditEvent.SESSIONS_ENDED_ALL for r in events)
    assert not any(value in str(r.details) for r in events for value in SECRETS.values())

    checked = await cli(env, "check")
    assert checked.returncode == 0, checked.stderr
    assert "warning: CSRF_SECRET is 100 days old, past SECRET_ROTATION_DAYS=90" in checked.stdout
    assert "bastion secrets rotate CSRF_SECRET" in checked.stdout
    late = await cli(env, "secrets", "status")
    assert "warning: CSRF_SECRET is 100 days old" in late.stdout
