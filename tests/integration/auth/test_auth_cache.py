# SPDX-License-Identifier: Apache-2.0
"""An authenticated request reads neither the database nor the denylist once its token was
verified, and every change that refuses a token still applies on the very next request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import event

from bastion.auth.principal import AuthMethod, Role
from bastion.auth.service import Context
from bastion.auth.tokens import TokenInvalid
from bastion.db import batch
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    bearer,
    identity_app,
    identity_settings,
    login,
    user_session,
)


@contextmanager
def statements(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs meanwhile: through SQLAlchemy, and on SQLite's
    driver thread for batches (``bastion.db.batch``), which SQLAlchemy's events do not see."""
    engine = app.state.engine.sync_engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    run = batch._Compiled.run

    def recorded(compiled: Any, connection: Any, given: Any) -> Any:
        seen.append(compiled.sql)
        return run(compiled, connection, given)

    event.listen(engine, "before_cursor_execute", record)
    with monkeypatch.context() as patch:
        patch.setattr(batch._Compiled, "run", recorded)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", record)


@contextmanager
def denylist_checks(app: FastAPI) -> Iterator[list[str]]:
    revocations = app.state.identity.revocations
    original = revocations.refused
    seen: list[str] = []

    async def counted(claims: Any) -> bool:
        seen.append(claims.jti)
        return bool(await original(claims))

    revocations.refused = counted
    try:
        yield seen
    finally:
        revocations.refused = original


async def no_reads_once_verified(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> None:
    settings = identity_settings(make_settings, ACCESS_LOG=False, AUTH_CACHE_SECONDS=60, **overrides)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "cached@example.com")
        headers = bearer(tokens["access_token"])
        with statements(app, monkeypatch) as seen, denylist_checks(app) as checks:
            for _ in range(20):
                me = await http.get("/api/auth/me", headers=headers)
                assert me.status_code == 200 and me.json()["email"] == "cached@example.com"
        assert [s for s in seen if "users" in s] == [], seen
        assert checks == []


async def test_a_verified_token_costs_no_database_read_and_no_denylist_check(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await no_reads_once_verified(make_settings, monkeypatch)


@pytest.mark.postgres
@pytest.mark.redis
async def test_the_same_on_postgresql_and_redis(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str
) -> None:
    await no_reads_once_verified(make_settings, monkeypatch, DATABASE_URL=postgres_url, REDIS_URL=redis_url)


async def test_every_ending_applies_on_the_next_request(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, AUTH_CACHE_SECONDS=60)
    async with identity_app(settings) as (app, http):
        service = app.state.identity.service()
        user_id, tokens = await user_session(http, "ending@example.com")
        headers = bearer(tokens["access_token"])
        assert (await http.get("/api/auth/me", headers=headers)).json()["role"] == "user"

        # A role change: the next request sees the new role (and the old token is ended).
        await service.set_role(user_id, Role.ADMIN, Context(), actor_id=None)
        assert_error(await http.get("/api/auth/me", headers=headers), 401)
        tokens = await login(http, "ending@example.com")
        headers = bearer(tokens["access_token"])
        assert (await http.get("/api/auth/me", headers=headers)).json()["role"] == "admin"

        # Disabled.
        await service.set_active(user_id, False, Context(), actor_id=None)
        assert_error(await http.get("/api/auth/me", headers=headers), 401)
        await service.set_active(user_id, True, Context(), actor_id=None)

        # A password change ends the other sessions.
        other = bearer((await login(http, "ending@example.com"))["access_token"])
        assert (await http.get("/api/auth/me", headers=other)).status_code == 200
        mine = bearer((await login(http, "ending@example.com"))["access_token"])
        changed = await http.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=mine,
        )
        assert changed.status_code == 200, changed.text
        assert_error(await http.get("/api/auth/me", headers=other), 401)

        # A logout ends the token at once.
        fresh = bearer((await login(http, "ending@example.com", NEW_PASSWORD))["access_token"])
        assert (await http.get("/api/auth/me", headers=fresh)).status_code == 200
        assert (await http.post("/api/auth/logout", headers=fresh)).status_code == 204
        assert_error(await http.get("/api/auth/me", headers=fresh), 401)

        # Erasure.
        last = bearer((await login(http, "ending@example.com", NEW_PASSWORD))["access_token"])
        assert (await http.get("/api/auth/me", headers=last)).status_code == 200
        erased = await http.request("DELETE", "/api/me", json={"password": NEW_PASSWORD}, headers=last)
        assert erased.status_code == 204, erased.text
        assert_error(await http.get("/api/auth/me", headers=last), 401)


async def test_a_token_verified_while_its_session_ended_is_not_kept(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, AUTH_CACHE_SECONDS=60)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "race@example.com")
        identity = app.state.identity
        service = identity.service()
        cache = identity.cache
        cache.clear()
        original = identity.revocations.refused

        async def logout_meanwhile(claims: Any) -> bool:
            refused = bool(await original(claims))
            await service.logout(claims, None, Context())  # the ending lands mid-verification
            return refused

        identity.revocations.refused = logout_meanwhile
        try:
            # Refused (the session's row already says it ended), and in any case not kept.
            with pytest.raises(TokenInvalid):
                await service.authenticate(tokens["access_token"], AuthMethod.JWT)
        finally:
            identity.revocations.refused = original
        assert cache.tokens.data == {}
        assert_error(await http.get("/api/auth/me", headers=bearer(tokens["access_token"])), 401)


async def test_an_ended_session_stays_ended_when_the_denylist_forgot_it(
    make_settings: SettingsFactory,
) -> None:
    # A Redis restarted without persistence forgets the denylist; the database does not.
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, tokens = await user_session(http, "forgotten@example.com")
        headers = bearer(tokens["access_token"])
        assert (await http.post("/api/auth/logout", headers=headers)).status_code == 204
        identity = app.state.identity
        identity.revocations.failover.primary.entries.data.clear()
        identity.cache.clear()
        assert_error(await http.get("/api/auth/me", headers=headers), 401)


async def herd(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch, forget: str
) -> tuple[list[str], list[str]]:
    """25 concurrent ``/api/auth/me`` of one signed-in user, after the cache forgot ``forget``
    (``everything``, or only the ``users`` rows): the SQL statements and denylist checks they made."""
    settings = identity_settings(make_settings, ACCESS_LOG=False, AUTH_CACHE_SECONDS=60)
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "herd@example.com")
        headers = bearer(tokens["access_token"])
        assert (await http.get("/api/auth/me", headers=headers)).status_code == 200
        await app.state.anomaly.drain()  # the sign-in's own checks are done: only /me reads below
        cache = app.state.identity.service().cache
        if forget == "everything":
            cache.clear()  # as if the token's entry had just expired
        else:
            cache.users.data.clear()  # as if only the user's row had expired
        with statements(app, monkeypatch) as seen, denylist_checks(app) as checks:
            answers = await asyncio.gather(*(http.get("/api/auth/me", headers=headers) for _ in range(25)))
        assert [(a.status_code, a.json()["email"]) for a in answers] == [(200, "herd@example.com")] * 25
        return seen, checks


async def test_concurrent_requests_with_an_unverified_token_verify_it_once(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client of a busy user the moment its entry expires: one verification, one read."""
    seen, checks = await herd(make_settings, monkeypatch, "everything")
    assert len(checks) == 1
    # One read of the user's row and one of the session, for all 25.
    assert len([s for s in seen if "FROM users" in s]) == 1, seen
    assert len([s for s in seen if "FROM auth_sessions" in s]) == 1, seen


async def test_concurrent_reads_of_an_expired_user_row_share_one_read(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token is still verified but the user's row expired: the busy user's requests read it once."""
    seen, checks = await herd(make_settings, monkeypatch, "users")
    assert checks == []  # the token itself was not verified again
    assert len([s for s in seen if "FROM users" in s]) == 1, seen
    assert not [s for s in seen if "FROM auth_sessions" in s], seen
