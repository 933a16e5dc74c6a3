# SPDX-License-Identifier: Apache-2.0
"""Secret rotation with grace, on SQLite and PostgreSQL, with a clock the tests move.

For each secret: what was made under the previous value still verifies inside the grace period
and is refused after it; an emergency rotation ends every session at once; every instance on the
database reads the same current value; status reports ages without values.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.audit.events import AuditEvent
from bastion.audit.models import AuditRecord
from bastion.auth.api_key_service import KeyRejected, build_api_keys
from bastion.auth.models import ApiKey, PasswordResetToken
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.auth.repository import IdentityRepository
from bastion.auth.runtime import IdentityRuntime
from bastion.auth.service import RESET_PURPOSE, Context
from bastion.auth.tokens import TokenInvalid
from bastion.db import migrate
from bastion.db.engine import create_engine, create_sessionmaker
from bastion.db.session import unit_of_work
from bastion.errors import Unauthorized
from bastion.rotation.models import SecretVersion
from bastion.rotation.service import rotate, rotation_warnings, status
from bastion.settings import Settings
from tests.integration.auth.helpers import NEW_PASSWORD, PASSWORD
from tests.support.clock import DateClock

GRACE = timedelta(hours=2)
INSIDE = timedelta(hours=1)
AFTER = timedelta(hours=3)
# Token lifetimes longer than the grace, so a refusal after it is the grace ending, not an expiry.
LONG_LIVED: dict[str, Any] = {
    "REFRESH_TOKEN_DAYS": 30,
    "SESSION_MAX_DAYS": 60,
    "PASSWORD_RESET_MINUTES": 24 * 60,
    "ACCESS_TOKEN_MINUTES": 24 * 60,
    "API_KEY_CACHE_SECONDS": 0,
}


def Clock() -> DateClock:
    return DateClock(datetime(2026, 6, 1, 12, tzinfo=UTC))


@asynccontextmanager
async def instances(
    settings: Settings, clock: DateClock, count: int = 1
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], list[IdentityRuntime]]]:
    """``count`` identity runtimes (instances) on one migrated database, sharing the test's clock."""
    url = settings.database_url.get_secret_value()
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    runtimes = [
        await IdentityRuntime.start(settings=settings, sessionmaker=sessionmaker, redis=None, clock=clock)
        for _ in range(count)
    ]
    try:
        yield sessionmaker, runtimes
    finally:
        for runtime in runtimes:
            await runtime.close()
        await engine.dispose()


async def rotated(runtime: IdentityRuntime, name: str, clock: DateClock, **options: Any) -> str:
    """Rotate ``name`` as the command does, then let the instance reload (its periodic step)."""
    done = await rotate(
        runtime.sessionmaker,
        runtime.settings,
        name,
        grace=options.pop("grace", GRACE),
        audit=runtime.audit,
        clock=clock,
        **options,
    )
    await runtime.reload_keyring()
    return done.version


async def reset_token(runtime: IdentityRuntime, user_id: str, clock: DateClock) -> str:
    """A password-reset token stored as the mail flow stores it (hashed under SESSION_SECRET)."""
    token = runtime.secret_tokens.generate()
    async with unit_of_work(runtime.sessionmaker) as session:
        await IdentityRepository(session).add_reset_token(
            PasswordResetToken(
                user_id=user_id,
                token_hash=runtime.secret_tokens.digest(token, purpose=RESET_PURPOSE),
                created_at=clock(),
                expires_at=clock() + timedelta(days=1),
            )
        )
    return token


async def test_session_secret_refresh_and_reset_tokens(settings_for: Any) -> None:
    clock = Clock()
    async with instances(settings_for(**LONG_LIVED), clock) as (_sm, [runtime]):
        service = runtime.service()
        await service.create_user("ana@example.com", PASSWORD, Role.USER, Context())
        inside = await service.login("ana@example.com", PASSWORD, Context())
        after = await service.login("ana@example.com", PASSWORD, Context())
        resets = []
        for email in ("bob@example.com", "carol@example.com"):
            user = await service.create_user(email, PASSWORD, Role.USER, Context())
            resets.append(await reset_token(runtime, user.id, clock))
        version = await rotated(runtime, "SESSION_SECRET", clock)
        assert runtime.secrets.versions["SESSION_SECRET"].current.id == version
        service = runtime.service()

        clock.now += INSIDE  # tokens hashed under the previous SESSION_SECRET still resolve
        renewed = await service.refresh(inside.refresh_token, Context())
        await service.confirm_password_reset(resets[0], NEW_PASSWORD, Context())

        clock.now += AFTER - INSIDE  # the grace period is over: the previous value is never tried
        with pytest.raises(Unauthorized):
            await service.refresh(after.refresh_token, Context())
        with pytest.raises(Unauthorized):
            await service.confirm_password_reset(resets[1], NEW_PASSWORD, Context())
        # What was issued since the rotation is hashed under the new value and outlives the grace.
        await service.refresh(renewed.refresh_token, Context())


async def test_csrf_secret(settings_for: Any) -> None:
    clock = Clock()
    async with instances(settings_for(), clock) as (_sm, [runtime]):
        old = runtime.csrf.issue("session-1")
        await rotated(runtime, "CSRF_SECRET", clock)
        new = runtime.csrf.issue("session-1")
        clock.now += INSIDE
        assert runtime.csrf.valid(session_id="session-1", header=old, cookie=old)
        assert not runtime.csrf.valid(session_id="session-2", header=old, cookie=old)
        clock.now += AFTER - INSIDE
        assert not runtime.csrf.valid(session_id="session-1", header=old, cookie=old)
        assert runtime.csrf.valid(session_id="session-1", header=new, cookie=new)


async def test_api_key_salt_rehashes_keys_used_during_grace(settings_for: Any) -> None:
    clock = Clock()
    async with instances(settings_for(**LONG_LIVED), clock) as (sessionmaker, [runtime]):
        keys = build_api_keys(
            runtime.settings,
            sessionmaker=sessionmaker,
            redis=None,
            hasher=lambda: runtime.secrets.key_hasher,
            clock=clock,
        )
        owner = await runtime.service().create_user("owner@example.com", PASSWORD, Role.USER, Context())
        actor = Principal(subject=owner.id, role=Role.USER, method=AuthMethod.JWT, user_id=owner.id)
        used = await keys.create(actor, name="used", scopes=["chat"])
        unused = await keys.create(actor, name="unused", scopes=["chat"])
        # A key rotated just before the salt: both its secrets were hashed under the old salt.
        rotated_key = await keys.create(actor, name="rotated", scopes=["chat"])
        replaced = await keys.rotate(actor, rotated_key.key.id)
        old_hasher = runtime.secrets.key_hasher
        await rotated(runtime, "API_KEY_SALT", clock)
        assert runtime.secrets.key_hasher is not old_hasher

        clock.now += INSIDE
        assert (await keys.authenticate(used.secret)).api_key_id == used.key.id
        assert (await keys.authenticate(rotated_key.secret)).api_key_id == rotated_key.key.id
        async with sessionmaker() as session:
            stored = await session.get(ApiKey, used.key.id)
            assert stored is not None
            assert stored.secret_hash == runtime.secrets.key_hasher.managed(used.secret)

        clock.now += AFTER - INSIDE  # used keys were re-hashed and survive; the unused one does not
        assert (await keys.authenticate(used.secret)).api_key_id == used.key.id
        assert (await keys.authenticate(rotated_key.secret)).api_key_id == rotated_key.key.id
        with pytest.raises(KeyRejected) as refused:
            await keys.authenticate(unused.secret)
        assert refused.value.reason == "wrong_secret"
        with pytest.raises(KeyRejected):  # its new secret was never used under the new salt
            await keys.authenticate(replaced.secret)


async def test_hs256_secret_key(settings_for: Any) -> None:
    clock = Clock()
    settings = settings_for(JWT_ALGORITHM="HS256", **LONG_LIVED)
    async with instances(settings, clock) as (_sm, [runtime]):
        service = runtime.service()
        await service.create_user("hs@example.com", PASSWORD, Role.USER, Context())
        old = await service.login("hs@example.com", PASSWORD, Context())
        kid = await rotated(runtime, "SECRET_KEY", clock)
        new = await runtime.service().login("hs@example.com", PASSWORD, Context())
        assert jwt.get_unverified_header(new.access_token)["kid"] == kid
        assert jwt.get_unverified_header(old.access_token)["kid"] != kid
        clock.now += INSIDE
        runtime.access_tokens.verify(old.access_token)
        clock.now += AFTER - INSIDE
        with pytest.raises(TokenInvalid) as refused:
            runtime.access_tokens.verify(old.access_token)
        assert refused.value.reason == "unknown_key"
        runtime.access_tokens.verify(new.access_token)


async def test_emergency_rotation_ends_every_session(settings_for: Any) -> None:
    clock = Clock()
    async with instances(settings_for(**LONG_LIVED), clock) as (sessionmaker, [runtime]):
        service = runtime.service()
        for email in ("one@example.com", "two@example.com"):
            await service.create_user(email, PASSWORD, Role.USER, Context())
        pairs = [
            await service.login(email, PASSWORD, Context())
            for email in ("one@example.com", "two@example.com")
        ]
        await rotated(
            runtime,
            "SESSION_SECRET",
            clock,
            emergency=True,
            end_sessions=lambda: runtime.service().end_all_sessions(Context(), reason="emergency_rotation"),
        )
        service = runtime.service()
        for pair in pairs:  # no grace, and every session is over: refresh and access tokens alike
            with pytest.raises(Unauthorized):
                await service.refresh(pair.refresh_token, Context())
            with pytest.raises(TokenInvalid):
                await service.authenticate(pair.access_token, AuthMethod.JWT)
        assert (await service.login("one@example.com", PASSWORD, Context())).access_token
        async with sessionmaker() as session:
            records = (await session.scalars(select(AuditRecord).order_by(AuditRecord.timestamp))).all()
        rotations = [r for r in records if r.event_type == AuditEvent.SECRET_ROTATED]
        assert len(rotations) == 1 and rotations[0].target_id == "SESSION_SECRET"
        assert rotations[0].details["emergency"] is True and rotations[0].details["sessions_ended"] == 2
        assert any(r.event_type == AuditEvent.SESSIONS_ENDED_ALL for r in records)
        secret = runtime.secrets.versions["SESSION_SECRET"].current.value
        assert secret is not None and all(secret.decode() not in str(r.details) for r in records)


async def test_every_instance_reads_the_rotated_value(settings_for: Any) -> None:
    clock = Clock()
    async with instances(settings_for(), clock, count=2) as (sessionmaker, [first, second]):
        version = await rotated(first, "CSRF_SECRET", clock)
        clock.now += timedelta(minutes=1)
        await second.reload_keyring()  # what the maintenance loop does every minute
        assert second.secrets.versions["CSRF_SECRET"].current.id == version
        token = first.csrf.issue("session-x")
        assert second.csrf.valid(session_id="session-x", header=token, cookie=token)
        async with sessionmaker() as session:
            row = await session.get(SecretVersion, version)
        assert row is not None and row.sealed_value is not None and row.sealed_value.startswith("v2.")
        value = first.secrets.versions["CSRF_SECRET"].current.value
        assert value is not None and value.decode() not in row.sealed_value


async def test_status_ages_and_grace_and_erasure(settings_for: Any) -> None:
    clock = Clock()
    async with instances(settings_for(), clock) as (sessionmaker, [runtime]):
        start = clock()
        clock.now += timedelta(days=1)
        await rotated(runtime, "API_KEY_SALT", clock, grace=timedelta(days=7))
        found = {item.name: item for item in await status(sessionmaker, runtime.settings, clock=clock)}
        assert set(found) == {"SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT", "JWT_PRIVATE_KEYS"}
        assert found["SESSION_SECRET"].source == "settings" and found["SESSION_SECRET"].created_at == start
        assert found["API_KEY_SALT"].source == "rotated"
        assert found["API_KEY_SALT"].previous_until == clock() + timedelta(days=7)
        clock.now += timedelta(days=89)
        found_late = await status(sessionmaker, runtime.settings, clock=clock)
        warned = rotation_warnings(found_late, clock(), 90)
        assert any(w.startswith("SESSION_SECRET is 90 days old") for w in warned)
        assert not any(w.startswith("API_KEY_SALT") for w in warned)  # rotated 89 days ago
        assert {item.name: item.previous_until for item in found_late}["API_KEY_SALT"] is None
        await runtime.reload_keyring()  # a retired value's material is erased, not kept
        async with sessionmaker() as session:
            rows = (await session.scalars(select(SecretVersion))).all()
        assert all(row.sealed_value is None for row in rows if row.verify_until is not None)


async def test_a_new_settings_value_becomes_current(settings_for: Any) -> None:
    """Changing the environment's value is not a graceful rotation on instances that have the new
    value (they never had the old one); instances still running with the old value keep using it,
    and the record says when it was replaced."""
    clock = Clock()
    first = settings_for(SESSION_SECRET="a" * 20 + "first-session-secret-value")
    second = settings_for(SESSION_SECRET="b" * 20 + "second-session-secret-val")
    async with instances(first, clock) as (_sm_first, [old_instance]):
        clock.now += timedelta(days=1)
        async with instances(second, clock) as (_sm, [runtime]):
            versions = runtime.secrets.versions["SESSION_SECRET"]
            assert versions.current.source == "settings" and versions.previous is None
            await old_instance.reload_keyring()
            kept = old_instance.secrets.versions["SESSION_SECRET"].current
            assert kept.value is not None and kept.value.startswith(b"a" * 20)
            assert kept.verify_until == clock() + timedelta(days=second.secret_grace_days)
