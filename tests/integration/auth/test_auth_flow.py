# SPDX-License-Identifier: Apache-2.0
"""The account and session flow, end to end over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from bastion.audit.events import AuditEvent
from bastion.auth.models import RefreshToken, User
from tests.integration.auth.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    login,
    make_admin,
    register,
    user_session,
)


async def test_register_login_me_refresh_logout(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        created = await register(http, "Alice@Example.COM")
        assert set(created) == {"id", "email", "role"}
        assert created["email"] == "alice@example.com" and created["role"] == "user"

        tokens = await login(http, "alice@example.com")
        assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 30 * 60

        me = await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert me.json()["id"] == created["id"] and "password_hash" not in me.text

        rotated = await http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200
        new = rotated.json()
        assert new["refresh_token"] != tokens["refresh_token"]
        assert (await http.get("/api/auth/me", headers=bearer(new["access_token"]))).status_code == 200

        logout = await http.post("/api/auth/logout", headers=bearer(new["access_token"]))
        assert logout.status_code == 204
        assert_error(await http.get("/api/auth/me", headers=bearer(new["access_token"])), 401)
        again = await http.post("/api/auth/refresh", json={"refresh_token": new["refresh_token"]})
        assert_error(again, 401)
        # The stored refresh tokens are keyed hashes, never the tokens themselves.
        async with app.state.sessionmaker() as session:
            stored = (await session.scalars(select(RefreshToken.token_hash))).all()
        assert stored and tokens["refresh_token"] not in stored and all(len(h) == 64 for h in stored)
        events = {record.event_type for record in await audit_events(app)}
        assert {"user_registered", "auth_success", "token_refreshed", "logout"} <= events


async def test_registration_and_login_do_not_reveal_accounts(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        first = await http.post("/api/auth/register", json={"email": "bob@example.com", "password": PASSWORD})
        again = await http.post(
            "/api/auth/register", json={"email": "BOB@example.com", "password": NEW_PASSWORD}
        )
        assert first.status_code == again.status_code == 201
        assert set(first.json()) == set(again.json()) and again.json()["email"] == "bob@example.com"
        async with app.state.sessionmaker() as session:
            users = (await session.scalars(select(User))).all()
        assert len(users) == 1  # nothing was created or changed for the second attempt
        assert (
            await http.post("/api/auth/login", json={"email": "bob@example.com", "password": NEW_PASSWORD})
        ).status_code == 401

        unknown = await http.post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        wrong = await http.post(
            "/api/auth/login", json={"email": "bob@example.com", "password": "Wrong-pass-123!"}
        )
        a, b = assert_error(unknown, 401), assert_error(wrong, 401)
        assert (a["error"], a["message"]) == (b["error"], b["message"]) == ("unauthorized", "Login failed")


async def test_refresh_reuse_revokes_the_whole_family(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        _, tokens = await user_session(http, "carol@example.com")
        first = tokens["refresh_token"]
        second = (await http.post("/api/auth/refresh", json={"refresh_token": first})).json()
        # The stolen (already used) token comes back: refused, and the legitimate successor dies too.
        assert_error(await http.post("/api/auth/refresh", json={"refresh_token": first}), 401)
        assert_error(
            await http.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401
        )
        [event] = await audit_events(app, AuditEvent.REFRESH_REUSE_DETECTED)
        assert event.result == "failure" and first not in str(event.details)


async def test_concurrent_refreshes_with_one_token_only_one_wins(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (_app, http):
        _, tokens = await user_session(http, "dave@example.com")
        responses = await asyncio.gather(
            *(
                http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
                for _ in range(4)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 401, 401, 401], statuses


async def test_password_change_invalidates_every_session(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (_app, http):
        _, old = await user_session(http, "erin@example.com")
        other = await login(http, "erin@example.com")
        wrong = await http.post(
            "/api/auth/password",
            json={"current_password": "Not-the-one-1!", "new_password": NEW_PASSWORD},
            headers=bearer(old["access_token"]),
        )
        assert_error(wrong, 401)
        weak = await http.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers=bearer(old["access_token"]),
        )
        detail = assert_error(weak, 422, "password_policy")
        assert "too_short" in detail["rules"] and "short" not in weak.text.replace("too_short", "")
        changed = await http.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(old["access_token"]),
        )
        assert changed.status_code == 200
        for token in (old["access_token"], other["access_token"]):
            assert_error(await http.get("/api/auth/me", headers=bearer(token)), 401)
        for refresh in (old["refresh_token"], other["refresh_token"]):
            assert_error(await http.post("/api/auth/refresh", json={"refresh_token": refresh}), 401)
        assert (
            await http.get("/api/auth/me", headers=bearer(changed.json()["access_token"]))
        ).status_code == 200
        assert (
            await http.post("/api/auth/login", json={"email": "erin@example.com", "password": PASSWORD})
        ).status_code == 401
        await login(http, "erin@example.com", NEW_PASSWORD)


async def test_logout_all_and_admin_controls(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        user_id, one = await user_session(http, "frank@example.com")
        two = await login(http, "frank@example.com")
        assert (
            await http.post("/api/auth/logout-all", headers=bearer(one["access_token"]))
        ).status_code == 204
        for pair in (one, two):
            assert_error(await http.get("/api/auth/me", headers=bearer(pair["access_token"])), 401)
            assert_error(
                await http.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401
            )

        admin_id, admin = await make_admin(app, http, "root@example.com")
        as_admin = bearer(admin["access_token"])
        user = await login(http, "frank@example.com")
        as_user = bearer(user["access_token"])
        # A user can neither reach admin routes nor raise their own role.
        assert_error(
            await http.post(f"/api/admin/users/{user_id}/role", json={"role": "admin"}, headers=as_user), 403
        )
        assert_error(
            await http.post(f"/api/admin/users/{admin_id}/role", json={"role": "user"}, headers=as_admin), 403
        )
        assert_error(
            await http.post(f"/api/admin/users/{user_id}/role", json={"role": "root"}, headers=as_admin), 422
        )
        assert_error(await http.post("/api/admin/users/ffff/disable", headers=as_admin), 404)

        promoted = await http.post(
            f"/api/admin/users/{user_id}/role", json={"role": "admin"}, headers=as_admin
        )
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        assert_error(await http.get("/api/auth/me", headers=as_user), 401)  # old token: stale version
        user = await login(http, "frank@example.com")
        assert (
            await http.get(f"/api/admin/users/{admin_id}", headers=bearer(user["access_token"]))
        ).status_code == 200
        demoted = await http.post(f"/api/admin/users/{user_id}/role", json={"role": "user"}, headers=as_admin)
        assert demoted.status_code == 200
        user = await login(http, "frank@example.com")
        assert_error(
            await http.get(f"/api/admin/users/{admin_id}", headers=bearer(user["access_token"])), 403
        )

        forced = await http.post(f"/api/admin/users/{user_id}/logout-all", headers=as_admin)
        assert forced.status_code == 204
        assert_error(await http.get("/api/auth/me", headers=bearer(user["access_token"])), 401)

        user = await login(http, "frank@example.com")
        assert (await http.post(f"/api/admin/users/{user_id}/disable", headers=as_admin)).json()[
            "is_active"
        ] is False
        assert_error(await http.get("/api/auth/me", headers=bearer(user["access_token"])), 401)
        assert_error(await http.post("/api/auth/refresh", json={"refresh_token": user["refresh_token"]}), 401)
        assert_error(
            await http.post("/api/auth/login", json={"email": "frank@example.com", "password": PASSWORD}), 401
        )
        assert (await http.post(f"/api/admin/users/{user_id}/enable", headers=as_admin)).json()[
            "is_active"
        ] is True
        await login(http, "frank@example.com")
        events = [r.event_type for r in await audit_events(app)]
        for expected in ("role_changed", "user_disabled", "user_enabled", "logout_all"):
            assert expected in events


async def test_login_rehashes_weaker_hashes(settings_for: Any) -> None:
    settings = settings_for(PASSWORD_HASHER="bcrypt")
    async with identity_app(settings) as (app, http):
        await register(http, "hana@example.com")
        async with app.state.sessionmaker() as session:
            first = (await session.scalars(select(User.password_hash))).one()
        assert first.startswith("$bastion-bcrypt-sha256$$2b$04$")
    stronger = settings_for(ARGON2_MEMORY_KIB=512)
    async with identity_app(stronger) as (app, http):
        await login(http, "hana@example.com")  # bcrypt hashes stay verifiable
        async with app.state.sessionmaker() as session:
            second = (await session.scalars(select(User.password_hash))).one()
        assert second.startswith("$argon2id$v=19$m=512,t=1,p=1$")
        await login(http, "hana@example.com")
