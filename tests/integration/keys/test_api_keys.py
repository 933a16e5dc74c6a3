# SPDX-License-Identifier: Apache-2.0
"""Managed API keys over HTTP: create, use, list, rotate with a grace period, revoke, expire."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import Depends
from sqlalchemy import select

from bastion.api.ratelimit import rate_limit
from bastion.app import create_app
from bastion.auth.models import ApiKey
from bastion.db import migrate
from bastion.ratelimit.policies import Policy
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    user_session,
)
from tests.integration.keys.helpers import DateClock, create_key, key_header, use_clock
from tests.support.lifespan import lifespan_of


async def test_a_key_is_shown_once_works_and_is_listed_without_its_secret(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        user_id, tokens = await user_session(http, "owner@example.com")
        created = await create_key(
            http, tokens["access_token"], name="mobile app", scopes=["chat", "journal"]
        )
        key = created["key"]
        assert key.startswith(f"bst_{created['id']}_") and len(key) == 4 + 16 + 1 + 43
        assert created["role"] == "user" and created["scopes"] == ["chat", "journal"]
        assert created["user_id"] == user_id and created["last_used_at"] is None

        # The key alone is a caller: it may chat (its scope) as its own owner of sessions.
        session = await http.post("/api/sessions", json={}, headers=key_header(key))
        assert session.status_code == 201, session.text
        # Also as a bearer token.
        assert (await http.get("/api/sessions", headers=bearer(key))).status_code == 200

        listed = (await http.get("/api/keys", headers=bearer(tokens["access_token"]))).json()["items"]
        assert [item["id"] for item in listed] == [created["id"]]
        item = listed[0]
        assert {
            "id",
            "name",
            "scopes",
            "role",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        } <= set(item)
        assert "key" not in item and "secret_hash" not in item
        assert item["last_used_at"] is not None
        assert key not in str(listed)

        # Only the keyed hash is stored.
        async with app.state.sessionmaker() as db:
            row = await db.scalar(select(ApiKey).where(ApiKey.id == created["id"]))
        assert row is not None and key not in (row.secret_hash, row.previous_secret_hash)
        assert len(row.secret_hash) == 64

        events = await audit_events(app, "api_key_created")
        assert len(events) == 1 and events[0].target_id == created["id"]
        assert key not in str(events[0].details)


async def test_revoked_keys_are_refused_at_once(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, tokens = await user_session(http, "owner@example.com")
        created = await create_key(http, tokens["access_token"])
        assert (await http.get("/api/sessions", headers=key_header(created["key"]))).status_code == 200
        revoked = await http.delete(f"/api/keys/{created['id']}", headers=bearer(tokens["access_token"]))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert_error(await http.get("/api/sessions", headers=key_header(created["key"])), 401)
        # Revoking again is harmless; rotating a revoked key is a conflict.
        assert (
            await http.delete(f"/api/keys/{created['id']}", headers=bearer(tokens["access_token"]))
        ).status_code == 200
        assert_error(
            await http.post(f"/api/keys/{created['id']}/rotate", headers=bearer(tokens["access_token"])), 409
        )
        assert len(await audit_events(app, "api_key_revoked")) == 1
        rejected = await audit_events(app, "auth_failure")
        assert rejected and rejected[-1].details["reason"] == "revoked"
        assert rejected[-1].target_id == created["id"]
        assert created["key"] not in str([event.details for event in rejected])


async def test_rotation_keeps_the_old_secret_for_the_grace_period_then_stops(
    make_settings: SettingsFactory, database_url: str
) -> None:
    # On SQLite and PostgreSQL.
    settings = identity_settings(make_settings, API_KEY_ROTATION_GRACE_DAYS=7, DATABASE_URL=database_url)
    async with identity_app(settings) as (app, http):
        clock = DateClock()
        use_clock(app, clock)
        _, tokens = await user_session(http, "owner@example.com")
        auth = bearer(tokens["access_token"])
        created = await create_key(http, tokens["access_token"])
        old = created["key"]
        session = (await http.post("/api/sessions", json={}, headers=key_header(old))).json()

        rotated = await http.post(f"/api/keys/{created['id']}/rotate", headers=auth)
        assert rotated.status_code == 200
        new = rotated.json()["key"]
        assert new != old and rotated.json()["id"] == created["id"]
        assert rotated.json()["previous_valid_until"] is not None

        # Both work during the grace period, as the same key: its sessions carry over.
        for key in (old, new):
            response = await http.get(f"/api/sessions/{session['id']}", headers=key_header(key))
            assert response.status_code == 200, response.text
        clock.advance(days=6, hours=23)
        assert (await http.get("/api/sessions", headers=key_header(old))).status_code == 200
        clock.advance(hours=2)
        assert_error(await http.get("/api/sessions", headers=key_header(old)), 401)
        assert (await http.get(f"/api/sessions/{session['id']}", headers=key_header(new))).status_code == 200
        rejected = await audit_events(app, "auth_failure")
        assert rejected[-1].details["reason"] == "rotated"

        # Rotating again ends the previous secret's grace at once.
        second = (await http.post(f"/api/keys/{created['id']}/rotate", headers=auth)).json()["key"]
        assert (await http.get("/api/sessions", headers=key_header(second))).status_code == 200
        assert (await http.get("/api/sessions", headers=key_header(new))).status_code == 200
        third = (await http.post(f"/api/keys/{created['id']}/rotate", headers=auth)).json()["key"]
        assert_error(await http.get("/api/sessions", headers=key_header(new)), 401)
        assert (await http.get("/api/sessions", headers=key_header(second))).status_code == 200
        assert (await http.get("/api/sessions", headers=key_header(third))).status_code == 200
        assert len(await audit_events(app, "api_key_rotated")) == 3


async def test_expired_keys_are_refused_even_from_the_cache(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        clock = DateClock()
        use_clock(app, clock)
        _, tokens = await user_session(http, "owner@example.com")
        expires = (clock.now + timedelta(hours=1)).isoformat()
        created = await create_key(http, tokens["access_token"], expires_at=expires)
        assert (await http.get("/api/sessions", headers=key_header(created["key"]))).status_code == 200
        clock.advance(minutes=61)
        assert_error(await http.get("/api/sessions", headers=key_header(created["key"])), 401)
        assert (await audit_events(app, "auth_failure"))[-1].details["reason"] == "expired"
        # An expiry in the past is refused at creation.
        past = (clock.now - timedelta(days=400)).isoformat()
        response = await http.post(
            "/api/keys",
            json={"name": "x", "scopes": ["chat"], "expires_at": past},
            headers=bearer(tokens["access_token"]),
        )
        assert_error(response, 422)


async def test_scopes_and_roles_limit_what_a_key_can_do(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, tokens = await user_session(http, "owner@example.com")
        auth = bearer(tokens["access_token"])
        journal_only = await create_key(http, tokens["access_token"], scopes=["journal"])
        # No chat scope: no chatting, though its owner may.
        assert_error(await http.post("/api/sessions", json={}, headers=key_header(journal_only["key"])), 403)
        assert (await http.post("/api/sessions", json={}, headers=auth)).status_code == 201
        chat = await create_key(http, tokens["access_token"], scopes=["chat"])
        # A user key never reaches admin routes, and keys cannot mint keys.
        for path in ("/api/admin/blocklist", "/api/admin/keys"):
            assert_error(await http.get(path, headers=key_header(chat["key"])), 403)
        assert_error(
            await http.post(
                "/api/keys", json={"name": "x", "scopes": ["chat"]}, headers=key_header(chat["key"])
            ),
            403,
        )
        # Only admins create service keys or admin-scoped keys.
        for body in ({"role": "service", "scopes": ["completions"]}, {"scopes": ["admin"]}):
            assert_error(await http.post("/api/keys", json={"name": "x", **body}, headers=auth), 403)

        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        admin_key = await create_key(http, admin_tokens["access_token"], scopes=["admin"])
        assert (
            await http.get("/api/admin/blocklist", headers=key_header(admin_key["key"]))
        ).status_code == 200
        service = await create_key(http, admin_tokens["access_token"], role="service", scopes=["monitoring"])
        assert service["role"] == "service"
        ready = await http.get("/health/ready", headers=key_header(service["key"]))
        assert ready.status_code in (200, 503)
        # A service key with the chat scope still cannot chat: its role does not hold chat.
        odd = await create_key(http, admin_tokens["access_token"], role="service", scopes=["chat"])
        assert_error(await http.post("/api/sessions", json={}, headers=key_header(odd["key"])), 403)
        # The admin scope goes only on an admin's own user keys.
        response = await http.post(
            "/api/keys", json={"name": "x", "scopes": ["admin"], "role": "service"}, headers=admin
        )
        assert_error(response, 422)


async def test_users_see_and_manage_only_their_own_keys(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        owner_id, owner = await user_session(http, "owner@example.com")
        _, intruder = await user_session(http, "intruder@example.com")
        created = await create_key(http, owner["access_token"])
        theirs = bearer(intruder["access_token"])
        assert (await http.get("/api/keys", headers=theirs)).json() == {"items": []}
        for method, path in (
            ("GET", f"/api/keys/{created['id']}"),
            ("DELETE", f"/api/keys/{created['id']}"),
            ("POST", f"/api/keys/{created['id']}/rotate"),
        ):
            assert_error(await http.request(method, path, headers=theirs), 404)
        assert_error(await http.get("/api/admin/keys", headers=theirs), 403)
        # Creating a key for someone else is for admins.
        response = await http.post(
            "/api/keys", json={"name": "x", "scopes": ["chat"], "user_id": owner_id}, headers=theirs
        )
        assert_error(response, 403)
        # The key still works: nothing the intruder did touched it.
        assert (await http.get("/api/sessions", headers=key_header(created["key"]))).status_code == 200

        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        everything = (await http.get("/api/admin/keys", headers=admin)).json()["items"]
        assert [item["id"] for item in everything] == [created["id"]]
        only = (await http.get(f"/api/admin/keys?user_id={owner_id}", headers=admin)).json()["items"]
        assert [item["id"] for item in only] == [created["id"]]
        assert (await http.delete(f"/api/keys/{created['id']}", headers=admin)).status_code == 200
        assert_error(await http.get("/api/sessions", headers=key_header(created["key"])), 401)


async def test_key_owned_sessions_are_visible_only_to_that_key(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        first = await create_key(http, tokens["access_token"])
        second = await create_key(http, tokens["access_token"])
        session = (await http.post("/api/sessions", json={}, headers=key_header(first["key"]))).json()
        assert_error(await http.get(f"/api/sessions/{session['id']}", headers=key_header(second["key"])), 404)
        assert_error(
            await http.get(f"/api/sessions/{session['id']}", headers=bearer(tokens["access_token"])), 404
        )
        assert (
            await http.get(f"/api/sessions/{session['id']}", headers=key_header(first["key"]))
        ).status_code == 200


async def test_disabling_or_demoting_the_owner_applies_to_cached_keys_at_once(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings, API_KEY_CACHE_SECONDS=3600)) as (app, http):
        owner_id, tokens = await user_session(http, "owner@example.com")
        created = await create_key(http, tokens["access_token"])
        boss_id, boss_tokens = await make_admin(app, http, "boss@example.com")
        boss_key = await create_key(http, boss_tokens["access_token"], scopes=["admin", "chat"])
        _, admin_tokens = await make_admin(app, http, "admin@example.com")
        admin = bearer(admin_tokens["access_token"])
        # Both keys verified and cached.
        assert (await http.get("/api/sessions", headers=key_header(created["key"]))).status_code == 200
        assert (
            await http.get("/api/admin/blocklist", headers=key_header(boss_key["key"]))
        ).status_code == 200

        assert (await http.post(f"/api/admin/users/{owner_id}/disable", headers=admin)).status_code == 200
        assert_error(await http.get("/api/sessions", headers=key_header(created["key"])), 401)

        demoted = await http.post(f"/api/admin/users/{boss_id}/role", json={"role": "user"}, headers=admin)
        assert demoted.status_code == 200
        assert_error(await http.get("/api/admin/blocklist", headers=key_header(boss_key["key"])), 403)
        # The key itself still works for what its owner may still do.
        assert (await http.get("/api/sessions", headers=key_header(boss_key["key"]))).status_code == 200


async def test_last_use_is_recorded_at_most_once_a_minute(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        _, tokens = await user_session(http, "owner@example.com")
        created = await create_key(http, tokens["access_token"])
        await http.get("/api/sessions", headers=key_header(created["key"]))

        async def last_used() -> object:
            async with app.state.sessionmaker() as db:
                row = await db.get(ApiKey, created["id"])
                assert row is not None
                return row.last_used_at

        first = await last_used()
        assert first is not None
        for _ in range(5):
            await http.get("/api/sessions", headers=key_header(created["key"]))
        assert await last_used() == first


async def test_a_keys_own_hourly_allowance_replaces_the_default(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, RATE_LIMIT_MESSAGES_PER_HOUR=100)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    app = create_app(settings)

    @app.get("/probe/hourly", dependencies=[Depends(rate_limit(Policy.MESSAGES_HOURLY))])
    async def hourly() -> dict[str, bool]:
        return {"ok": True}

    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            _, tokens = await user_session(http, "owner@example.com")
            limited = await create_key(http, tokens["access_token"], messages_per_hour=2)
            plain = await create_key(http, tokens["access_token"])
            assert limited["messages_per_hour"] == 2
            statuses = [
                (await http.get("/probe/hourly", headers=key_header(limited["key"]))).status_code
                for _ in range(3)
            ]
            assert statuses == [200, 200, 429]
            refused = await http.get("/probe/hourly", headers=key_header(limited["key"]))
            assert refused.headers["x-ratelimit-limit"] == "2"
            admitted = await http.get("/probe/hourly", headers=key_header(plain["key"]))
            assert admitted.status_code == 200 and admitted.headers["x-ratelimit-limit"] == "100"
            # Rotation keeps the key id, so the new secret spends the same (exhausted) allowance.
            rotated = await http.post(
                f"/api/keys/{limited['id']}/rotate", headers=bearer(tokens["access_token"])
            )
            assert (
                await http.get("/probe/hourly", headers=key_header(rotated.json()["key"]))
            ).status_code == 429


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": "", "scopes": ["chat"]},
        {"name": "x" * 101, "scopes": ["chat"]},
        {"name": "bad\x00name", "scopes": ["chat"]},
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["everything"]},
        {"name": "x", "scopes": ["chat:use"]},
        {"name": "x", "scopes": ["chat"] * 8},
        {"name": "x", "scopes": ["chat"], "role": "admin"},
        {"name": "x", "scopes": ["chat"], "expires_at": "tomorrow"},
        {"name": "x", "scopes": ["chat"], "expires_at": "2030-01-01T00:00:00"},
        {"name": "x", "scopes": ["chat"], "messages_per_hour": 0},
        {"name": "x", "scopes": ["chat"], "user_id": "../../etc"},
        {"name": "x", "scopes": ["chat"], "extra": True},
        {"name": ["x"], "scopes": "chat"},
    ],
)
async def test_hostile_key_requests_get_a_clear_4xx(
    make_settings: SettingsFactory, body: dict[str, object]
) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "owner@example.com")
        assert_error(await http.post("/api/keys", json=body, headers=bearer(tokens["access_token"])), 422)
        for path in ("/api/keys/not-a-key-id", "/api/keys/" + "a" * 64, "/api/keys/%00"):
            response = await http.delete(path, headers=bearer(tokens["access_token"]))
            assert response.status_code in (404, 422), response.text
        text = await http.post(
            "/api/keys",
            content=b"name=x",
            headers={**bearer(tokens["access_token"]), "Content-Type": "text/plain"},
        )
        assert_error(text, 415)
        assert_error(await http.get("/api/keys"), 401)
