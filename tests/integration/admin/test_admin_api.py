# SPDX-License-Identifier: Apache-2.0
"""The admin API's listings and controls: users, active chat sessions, rate-limit state, secrets.

Each runs through the whole app (real authentication, the audit store) on SQLite and PostgreSQL;
the refusal of every other credential is the route matrix's (test_route_matrix.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.auth.principal import Role
from bastion.auth.service import Context
from bastion.ratelimit.policies import email_identity
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    user_session,
)


async def _admin(app: FastAPI, http: httpx.AsyncClient) -> dict[str, str]:
    _, tokens = await make_admin(app, http, "root@example.com")
    return bearer(tokens["access_token"])


async def _pages(http: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> list[Any]:
    """Every item of a keyset-paged listing, page by page."""
    items: list[Any] = []
    after: str | None = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        response = await http.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        after = body.get("next")
        if after is None:
            return items


async def test_admins_list_filter_page_and_find_users_by_exact_email(
    make_settings: SettingsFactory, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = identity_settings(make_settings, DATABASE_URL=database_url)
    async with identity_app(settings) as (app, http):
        admin = await _admin(app, http)
        ids = [(await user_session(http, f"person{n}@example.com"))[0] for n in range(5)]
        service = app.state.identity.service()
        await service.set_active(ids[1], False, Context(), actor_id=None)
        await service.set_role(ids[2], Role.SERVICE, Context(), actor_id=None)

        everyone = await _pages(http, "/api/admin/users", admin, limit=2)
        assert len(everyone) == 6 and len({user["id"] for user in everyone}) == 6
        # Newest first: the last account registered leads.
        assert everyone[0]["id"] == ids[4] and everyone[-1]["email"] == "root@example.com"
        assert all(set(user) == {"id", "email", "role", "is_active", "created_at"} for user in everyone)

        admins = (await http.get("/api/admin/users", params={"role": "admin"}, headers=admin)).json()
        assert [user["email"] for user in admins["items"]] == ["root@example.com"]
        services = await _pages(http, "/api/admin/users", admin, role="service")
        assert [user["id"] for user in services] == [ids[2]]
        disabled = await _pages(http, "/api/admin/users", admin, active="false")
        assert [user["id"] for user in disabled] == [ids[1]]
        assert len(await _pages(http, "/api/admin/users", admin, active="true", limit=1)) == 5

        # Exact address, in any case: found by its blind index.
        found = (
            await http.get("/api/admin/users", params={"email": "Person3@Example.COM"}, headers=admin)
        ).json()
        assert [user["id"] for user in found["items"]] == [ids[3]] and found["next"] is None
        # The address searched for stays out of the access log, as it is sealed in the database.
        logged = capsys.readouterr()
        assert "/api/admin/users" in logged.out + logged.err
        assert "person3" not in (logged.out + logged.err).lower()
        nobody = await http.get("/api/admin/users", params={"email": "nobody@example.com"}, headers=admin)
        assert nobody.json() == {"items": [], "next": None}
        # A fragment is not an address: sealed addresses cannot be searched by substring.
        assert_error(await http.get("/api/admin/users", params={"email": "person3"}, headers=admin), 422)
        assert_error(await http.get("/api/admin/users", params={"role": "root"}, headers=admin), 422)
        assert_error(await http.get("/api/admin/users", params={"after": "x"}, headers=admin), 422)

        _, person = await user_session(http, "curious@example.com")
        assert_error(
            await http.get("/api/admin/users", headers=bearer(person["access_token"])), 403, "forbidden"
        )
        assert_error(await http.get("/api/admin/users"), 401, "unauthorized")

        reads = [r for r in await audit_events(app, "admin_user_read") if r.target_type == "users"]
        assert reads and all(r.actor_type == "user" and r.target_id == "list" for r in reads)
        searched = [r for r in reads if r.details.get("by_email")]
        assert len(searched) == 2 and searched[0].details["count"] == 1
        assert all("person3" not in str(r.details).lower() for r in reads)  # never the address


@asynccontextmanager
async def chat_deployment(
    make_settings: SettingsFactory, database_url: str, *, cap: int
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, dict[str, str], str, dict[str, str]]]:
    """An app whose owners may hold ``cap`` sessions: (app, client, admin, owner's id, owner)."""
    settings = identity_settings(make_settings, DATABASE_URL=database_url, MAX_SESSIONS_PER_API_KEY=cap)
    async with identity_app(settings) as (app, http):
        admin = await _admin(app, http)
        owner_id, tokens = await user_session(http, "chatter@example.com")
        yield app, http, admin, owner_id, bearer(tokens["access_token"])


async def test_admins_count_list_and_end_active_chat_sessions(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async with chat_deployment(make_settings, database_url, cap=2) as (app, http, admin, owner_id, owner):
        other_id, other_tokens = await user_session(http, "other@example.com")
        created = [
            (await http.post("/api/sessions", json={"title": "my private title"}, headers=owner)).json()["id"]
            for _ in range(2)
        ]
        other = await http.post("/api/sessions", json={}, headers=bearer(other_tokens["access_token"]))
        assert other.status_code == 201
        # The owner is at the cap.
        assert_error(await http.post("/api/sessions", json={}, headers=owner), 409, "session_limit")

        listing = await http.get("/api/admin/sessions", headers=admin)
        assert listing.status_code == 200, listing.text
        body = listing.json()
        assert body["counts"]["total"] == 3 and body["counts"]["slots_held"] == 3
        assert body["counts"]["max_per_owner"] == 2
        assert body["counts"]["busiest_owners"] == [
            {"owner": f"user:{owner_id}", "active": 2},
            {"owner": f"user:{other_id}", "active": 1},
        ]
        # Newest first, ids and owners only: titles are the owner's sealed content.
        assert [item["id"] for item in body["items"]] == [other.json()["id"], *reversed(created)]
        assert "my private title" not in listing.text and "title" not in body["items"][0]
        paged = await _pages(http, "/api/admin/sessions", admin, limit=1)
        assert [item["id"] for item in paged] == [item["id"] for item in body["items"]]
        mine = (
            await http.get("/api/admin/sessions", params={"owner": f"user:{owner_id}"}, headers=admin)
        ).json()
        assert {item["id"] for item in mine["items"]} == set(created)
        assert mine["counts"]["owner_active"] == 2

        # Ending one goes the owner's way: gone for the owner, and the slot is free again.
        assert (await http.delete(f"/api/admin/sessions/{created[0]}", headers=admin)).status_code == 204
        assert_error(await http.get(f"/api/sessions/{created[0]}", headers=owner), 404)
        assert (await http.post("/api/sessions", json={}, headers=owner)).status_code == 201
        assert_error(await http.delete(f"/api/admin/sessions/{created[0]}", headers=admin), 404, "not_found")
        assert_error(
            await http.get("/api/admin/sessions", params={"owner": "ip:1.2.3.4"}, headers=admin), 422
        )
        assert_error(await http.delete(f"/api/admin/sessions/{created[1]}", headers=owner), 403, "forbidden")

        [ended] = await audit_events(app, "admin_session_ended")
        assert ended.target_id == created[0] and ended.details == {"owner": f"user:{owner_id}"}
        assert len(await audit_events(app, "admin_sessions_read")) == 5  # one per page


async def test_an_admin_and_the_owner_ending_one_session_at_once_free_one_slot(
    make_settings: SettingsFactory, database_url: str
) -> None:
    async with chat_deployment(make_settings, database_url, cap=1) as (_app, http, admin, _id, owner):
        for _ in range(5):
            session = (await http.post("/api/sessions", json={}, headers=owner)).json()["id"]
            answers = await asyncio.gather(
                http.delete(f"/api/admin/sessions/{session}", headers=admin),
                http.delete(f"/api/sessions/{session}", headers=owner),
            )
            statuses = sorted(answer.status_code for answer in answers)
            # Ended once (whoever came second finds nothing, or both saw it and both ended it).
            assert statuses in ([204, 404], [204, 204]), [a.text for a in answers]
            counts = (await http.get("/api/admin/sessions", headers=admin)).json()["counts"]
            assert counts["total"] == 0 == counts["slots_held"]
        # The one slot is free: the owner (capped at one) starts again.
        assert (await http.post("/api/sessions", json={}, headers=owner)).status_code == 201


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def shared_state(request: pytest.FixtureRequest) -> dict[str, str]:
    """The limiter in process, then on the run's Redis (the storage every instance shares)."""
    return {} if request.param == "memory" else {"REDIS_URL": request.getfixturevalue("redis_url")}


async def test_admins_inspect_and_reset_one_identitys_rate_limits(
    make_settings: SettingsFactory, shared_state: dict[str, str]
) -> None:
    # One login per six minutes, ten at once: nothing refills while the test runs.
    settings = identity_settings(
        make_settings, RATE_LIMIT_LOGIN="10/hour;burst=10", RATE_LIMIT_BLOCK_AUTH_FAILURES=50, **shared_state
    )
    async with identity_app(settings) as (app, http):
        admin = await _admin(app, http)
        path = "/api/admin/rate-limits/ip:127.0.0.1"

        def login_state(body: dict[str, Any]) -> dict[str, Any]:
            [state] = [p for p in body["policies"] if p["policy"] == "login"]
            return state

        before = (await http.get(path, headers=admin)).json()
        assert before["identity"] == "ip:127.0.0.1" and before["network_blocked"] is False
        assert {p["policy"] for p in before["policies"]} >= {"global", "login", "register", "messages"}
        for _ in range(2):
            wrong = {"email": "root@example.com", "password": PASSWORD + "x"}
            assert (await http.post("/api/auth/login", json=wrong)).status_code == 401
        after = (await http.get(path, headers=admin)).json()
        assert login_state(after)["remaining"] == login_state(before)["remaining"] - 2
        assert login_state(after)["tracked"] and login_state(after)["limit"] == 10
        assert after["auth_failures"] == before["auth_failures"] + 2

        assert (await http.delete(path, headers=admin)).status_code == 204
        reset = (await http.get(path, headers=admin)).json()
        # The whole burst is back, as if the address had never signed in.
        assert login_state(reset)["remaining"] == 10 and not login_state(reset)["tracked"]
        assert login_state(reset)["reset_seconds"] == 0 == login_state(reset)["retry_after_seconds"]
        assert reset["auth_failures"] == 0 and reset["violations"] == 0

        # A block shows, and outlives a reset (lifting it is the blocklist's).
        placed = await http.post("/api/admin/blocklist", json={"kind": "key", "value": "k-9"}, headers=admin)
        assert placed.status_code == 201
        assert (await http.delete("/api/admin/rate-limits/key:k-9", headers=admin)).status_code == 204
        blocked = (await http.get("/api/admin/rate-limits/key:k-9", headers=admin)).json()
        assert blocked["block"]["reason"] == "manual" and blocked["network_blocked"] is None

        # Identities are taken to the form the limiter counts: an IPv6 client's network, a hashed address.
        v6 = (await http.get("/api/admin/rate-limits/ip:2001:db8::5", headers=admin)).json()
        assert v6["identity"] == "ip:2001:db8::/64"
        mail = (await http.get("/api/admin/rate-limits/email:Root@Example.com", headers=admin)).json()
        assert mail["identity"] == email_identity("root@example.com")
        assert "root@example.com" not in str(mail).lower()
        for bad in ("ip:not-an-ip", "host:x", "email:nobody", "key:a%00b"):
            assert_error(await http.get(f"/api/admin/rate-limits/{bad}", headers=admin), 422)

        cleared = (await audit_events(app, "rate_limit_reset"))[0]
        assert cleared.target_id == "ip:127.0.0.1" and "login" in cleared.details["policies"]
        assert cleared.details["auth_failures"] == after["auth_failures"]
        assert len(await audit_events(app, "rate_limit_state_read")) >= 6


async def test_secrets_status_shows_ages_never_values(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings) as (app, http):
        admin = await _admin(app, http)
        response = await http.get("/api/admin/secrets", headers=admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["rotation_days"] == settings.secret_rotation_days and body["warnings"] == []
        names = {item["name"] for item in body["secrets"]}
        assert {"SESSION_SECRET", "CSRF_SECRET", "API_KEY_SALT"} <= names
        for item in body["secrets"]:
            assert item["rotation_due"] is False
            assert item["age_days"] is None or item["age_days"] >= 0
        for name in ("session_secret", "csrf_secret", "api_key_salt", "database_encryption_key"):
            secret = getattr(app.state.settings, name)
            if secret is not None:
                assert secret.get_secret_value() not in response.text, name
        [read] = await audit_events(app, "secrets_status_read")
        assert read.target_type == "secrets"
        _, person = await user_session(http, "nosy@example.com")
        assert_error(await http.get("/api/admin/secrets", headers=bearer(person["access_token"])), 403)


async def test_admin_reads_are_audited_and_the_audit_search_takes_only_dates(
    make_settings: SettingsFactory,
) -> None:
    async with identity_app(identity_settings(make_settings)) as (app, http):
        admin = await _admin(app, http)
        for path in ("/api/admin/blocklist", "/api/admin/alerts", "/api/admin/keys", "/api/admin/audit"):
            assert (await http.get(path, headers=admin)).status_code == 200, path
        for event in ("blocklist_read", "alerts_read", "admin_keys_read", "audit_queried"):
            [record] = await audit_events(app, event)
            assert record.actor_type == "user" and record.details["count"] >= 0, event
        # A bare number is not a date-time, whatever pydantic would make of it.
        for value in ("0.5", "1700000000"):
            assert_error(await http.get("/api/admin/audit", params={"until": value}, headers=admin), 422)
        since = {"since": "2026-01-31T12:00:00Z"}
        assert (await http.get("/api/admin/audit", params=since, headers=admin)).status_code == 200
