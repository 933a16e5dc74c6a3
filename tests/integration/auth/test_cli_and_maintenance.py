# SPDX-License-Identifier: Apache-2.0
"""`bastion users` / `bastion keys` as real processes; the purge of expired sessions and tokens."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import func, select

from bastion.audit.events import AuditEvent
from bastion.auth.keyring import load_keyring, rotate_signing_key
from bastion.auth.models import AuthSession, PasswordResetToken, RefreshToken, User
from bastion.auth.principal import Role
from bastion.auth.runtime import IdentityRuntime
from bastion.auth.service import Context
from bastion.crypto import material
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import unit_of_work
from bastion.errors import Unauthorized
from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    CHEAP_HASHING,
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    login,
    user_session,
)


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def cli_env(settings: Any, **extra: str) -> dict[str, str]:
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "VAR_DIR": str(settings.var_dir),
        "DATABASE_ENCRYPTION_KEY": settings.secret("DATABASE_ENCRYPTION_KEY"),
        **{k: str(v) for k, v in CHEAP_HASHING.items()},
    }
    env.update(extra)
    return env


async def test_users_commands(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    env = cli_env(settings)
    mismatch = await asyncio.to_thread(
        run_cli, env, "users", "create-admin", "--email", "boss@example.com", stdin=f"{PASSWORD}\nother\n"
    )
    assert mismatch.returncode != 0
    weak = await asyncio.to_thread(
        run_cli, env, "users", "create-admin", "--email", "boss@example.com", stdin="password\npassword\n"
    )
    assert weak.returncode == 1 and "password refused" in weak.stderr
    created = await asyncio.to_thread(
        run_cli,
        env,
        "users",
        "create-admin",
        "--email",
        "Boss@Example.com",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    taken = await asyncio.to_thread(
        run_cli,
        env,
        "users",
        "create-admin",
        "--email",
        "boss@example.com",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert taken.returncode == 1 and "already exists" in taken.stderr

    async with identity_app(settings, migrate_first=False) as (_app, http):
        admin = await login(http, "boss@example.com")
        me = await http.get("/api/auth/me", headers=bearer(admin["access_token"]))
        assert me.json()["role"] == "admin"
        _, worker = await user_session(http, "worker@example.com")

    assert (
        await asyncio.to_thread(
            run_cli, env, "users", "set-role", "--email", "worker@example.com", "--role", "service"
        )
    ).returncode == 0
    assert (
        await asyncio.to_thread(run_cli, env, "users", "disable", "--email", "worker@example.com")
    ).returncode == 0
    missing = await asyncio.to_thread(run_cli, env, "users", "disable", "--email", "nobody@example.com")
    assert missing.returncode == 1 and "no account" in missing.stderr
    async with identity_app(settings, migrate_first=False) as (_app, http):
        assert_error(await http.get("/api/auth/me", headers=bearer(worker["access_token"])), 401)
        assert_error(
            await http.post("/api/auth/login", json={"email": "worker@example.com", "password": PASSWORD}),
            401,
        )
    assert (
        await asyncio.to_thread(run_cli, env, "users", "enable", "--email", "worker@example.com")
    ).returncode == 0
    async with identity_app(settings, migrate_first=False) as (_app, http):
        tokens = await login(http, "worker@example.com")
        assert (await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))).json()[
            "role"
        ] == "service"


async def test_rotate_signing_key_command(make_settings: SettingsFactory) -> None:
    keys = {
        "JWT_PRIVATE_KEYS": material.signing_keyset("EdDSA"),
        "DATABASE_ENCRYPTION_KEY": material.encryption_key(),
    }
    settings = identity_settings(make_settings, **keys)
    old_kid = next(iter(json.loads(keys["JWT_PRIVATE_KEYS"])))
    async with identity_app(settings) as (_app, http):
        _, old_tokens = await user_session(http, "rotate@example.com")
    rotated = await asyncio.to_thread(run_cli, cli_env(settings, **keys), "keys", "rotate-signing")
    assert rotated.returncode == 0, rotated.stderr
    async with identity_app(settings, migrate_first=False) as (app, http):
        kids = {key["kid"] for key in (await http.get("/.well-known/jwks.json")).json()["keys"]}
        assert old_kid in kids and len(kids) == 2
        assert (await http.get("/api/auth/me", headers=bearer(old_tokens["access_token"]))).status_code == 200
        fresh = await login(http, "rotate@example.com")
        new_kid = jwt.get_unverified_header(fresh["access_token"])["kid"]
        assert new_kid != old_kid and new_kid in kids
        audited = await audit_events(app, AuditEvent.SIGNING_KEY_ROTATED)
        assert [(row.actor_type, row.target_id) for row in audited] == [("operator", new_kid)]
        assert "PRIVATE" not in json.dumps(audited[0].details)


async def test_rotation_grace_period_with_an_injected_clock(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, JWT_KEY_GRACE_DAYS=7)
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        sessionmaker = create_sessionmaker(engine)
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        first = await load_keyring(sessionmaker, settings, clock=lambda: t0)
        old_kid = first.current.kid
        new_kid = await rotate_signing_key(sessionmaker, settings, clock=lambda: t0 + timedelta(days=1))
        ring = await load_keyring(sessionmaker, settings, clock=lambda: t0 + timedelta(days=2))
        assert ring.current.kid == new_kid
        assert ring.verify_key(old_kid, t0 + timedelta(days=7)) is not None
        assert ring.verify_key(old_kid, t0 + timedelta(days=8, seconds=1)) is None
        assert [k["kid"] for k in ring.jwks(t0 + timedelta(days=9))["keys"]] == [new_kid]
    finally:
        await engine.dispose()


async def test_sessions_have_an_absolute_lifetime(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, SESSION_MAX_DAYS=30, REFRESH_TOKEN_DAYS=7)
    async with runtime_with_clock(settings) as (runtime, clock):
        service = runtime.service()
        await service.create_user("forever@example.com", PASSWORD, Role.USER, Context())
        pair = await service.login("forever@example.com", PASSWORD, Context())
        for days in (6, 6, 6, 6, 5):  # refreshed well within REFRESH_TOKEN_DAYS, up to day 29
            clock.now += timedelta(days=days)
            pair = await service.refresh(pair.refresh_token, Context())
        clock.now += timedelta(days=2)  # 31 days after login
        with pytest.raises(Unauthorized):  # the session outlived SESSION_MAX_DAYS
            await service.refresh(pair.refresh_token, Context())
        # A refresh token left unused beyond REFRESH_TOKEN_DAYS is dead too.
        idle = await service.login("forever@example.com", PASSWORD, Context())
        clock.now += timedelta(days=7, seconds=1)
        with pytest.raises(Unauthorized):  # an idle refresh token outlived REFRESH_TOKEN_DAYS
            await service.refresh(idle.refresh_token, Context())


@asynccontextmanager
async def runtime_with_clock(settings: Settings) -> AsyncIterator[tuple[IdentityRuntime, MovableClock]]:
    """An identity runtime on a migrated database, with a clock the test moves."""
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    clock = MovableClock()
    runtime = await IdentityRuntime.start(
        settings=settings, sessionmaker=create_sessionmaker(engine), redis=None, clock=clock
    )
    try:
        yield runtime, clock
    finally:
        await runtime.close()
        await engine.dispose()


class MovableClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def count(sessionmaker: Any, model: Any) -> int:
    async with sessionmaker() as session:
        return int((await session.scalar(select(func.count()).select_from(model))) or 0)


async def test_purge_removes_expired_sessions_and_tokens(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    async with runtime_with_clock(settings) as (runtime, clock):
        service = runtime.service()
        await service.create_user("purge@example.com", PASSWORD, Role.USER, Context())
        pair = await service.login("purge@example.com", PASSWORD, Context())
        await service.refresh(pair.refresh_token, Context())
        await service.request_password_reset("purge@example.com", Context())
        await asyncio.wait(set(runtime.background))  # the link is created with the mail
        sm = runtime.sessionmaker
        assert await count(sm, RefreshToken) == 2 and await count(sm, PasswordResetToken) == 1
        assert await service.purge() == {"refresh_tokens": 0, "password_reset_tokens": 0, "sessions": 0}

        clock.now += timedelta(hours=1)  # the reset link (30 min) has expired
        assert (await service.purge())["password_reset_tokens"] == 1
        clock.now += timedelta(days=2)  # the used refresh token is past its reuse-detection day
        assert (await service.purge())["refresh_tokens"] == 1
        clock.now += timedelta(days=30)  # the session's absolute lifetime is over
        counts = await service.purge()
        assert counts["sessions"] == 1
        assert await count(sm, AuthSession) == 0 and await count(sm, RefreshToken) == 0
        assert await count(sm, User) == 1


async def test_purge_runs_on_a_schedule_in_the_app(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, AUTH_PURGE_INTERVAL_SECONDS=1)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "scheduled@example.com")
        # A write transaction as the app's own (SQLite's write lock taken first): the scheduled
        # purge and the access log write meanwhile.
        async with unit_of_work(app.state.sessionmaker) as session:
            stored = (await session.scalars(select(RefreshToken))).one()
            stored.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        for _ in range(100):
            if await count(app.state.sessionmaker, RefreshToken) == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the scheduled purge did not run")
        assert_error(
            await http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
        )


@pytest.mark.redis
async def test_users_unlock_lifts_a_shared_lock(make_settings: SettingsFactory, redis_url: str) -> None:
    settings = identity_settings(
        make_settings,
        REDIS_URL=redis_url,
        TRUSTED_PROXIES="127.0.0.1",
        LOGIN_LOCK_FAILURES=4,
        LOGIN_LOCK_CLIENTS=2,
    )
    owner = {"email": "locked@example.com", "password": PASSWORD}
    async with identity_app(settings) as (_app, http):
        await user_session(http, "locked@example.com")
        for n in range(4):
            wrong = {"email": "locked@example.com", "password": "Wrong-Guess-42!x"}
            headers = {"X-Forwarded-For": f"198.51.100.{n % 2}"}
            assert_error(await http.post("/api/auth/login", json=wrong, headers=headers), 401)
        assert_error(await http.post("/api/auth/login", json=owner), 429, "rate_limited")
    env = cli_env(settings, REDIS_URL=redis_url)
    unknown = await asyncio.to_thread(run_cli, env, "users", "unlock", "--email", "nobody@example.com")
    assert unknown.returncode == 1 and "no account" in unknown.stderr
    both = await asyncio.to_thread(run_cli, env, "users", "unlock")
    assert both.returncode == 2
    done = await asyncio.to_thread(run_cli, env, "users", "unlock", "--email", "Locked@Example.com")
    assert done.returncode == 0 and "unlocked" in done.stdout, done.stderr
    async with identity_app(settings, migrate_first=False) as (app, http):
        assert (await http.post("/api/auth/login", json=owner)).status_code == 200
        records = await audit_events(app, AuditEvent.ACCOUNT_UNLOCKED)
        unlocked = [(r.actor_id, r.request_id, r.details) for r in records]
        assert unlocked == [(None, "cli", {"was_locked": True})]
