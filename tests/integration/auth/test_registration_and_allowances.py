# SPDX-License-Identifier: Apache-2.0
"""Who may join and who may mint keys: REGISTRATION, API_KEY_SELF_SERVICE, key allowances.

A deployment that requires API keys keeps strangers out only if strangers can neither register
nor mint keys; and users must not raise their own limits: only administrators set a key's
allowance above the operator's, and a user's keys share one hourly budget besides their own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bastion.auth.principal import Role
from bastion.auth.service import Context
from bastion.db import migrate
from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    login,
    make_admin,
    user_session,
)
from tests.integration.auth.test_cli_and_maintenance import cli_env, run_cli
from tests.integration.keys.helpers import create_key


async def register(http: httpx.AsyncClient, email: str, **extra: Any) -> httpx.Response:
    return await http.post("/api/auth/register", json={"email": email, "password": PASSWORD, **extra})


# -- REGISTRATION ---------------------------------------------------------------------------------


async def test_closed_registration_refuses_everyone(settings_for: Any) -> None:
    async with identity_app(settings_for(REGISTRATION="closed")) as (app, http):
        assert_error(await register(http, "newcomer@example.com"), 403, "forbidden")
        assert_error(await register(http, "x@example.com", invitation="anything"), 403, "forbidden")
        assert_error(
            await http.post("/api/auth/login", json={"email": "newcomer@example.com", "password": PASSWORD}),
            401,
        )
        denied = [e for e in await audit_events(app, "user_registered") if e.result == "failure"]
        assert len(denied) == 2 and all(e.details == {"reason": "closed"} for e in denied)


async def test_invite_only_registration(settings_for: Any) -> None:
    async with identity_app(settings_for(REGISTRATION="invite")) as (app, http):
        _, admin = await make_admin_in_invite_mode(app, http)
        headers = bearer(admin["access_token"])
        open_code = (await http.post("/api/admin/invitations", json={}, headers=headers)).json()
        bound = await http.post(
            "/api/admin/invitations", json={"email": "Bound@Example.com"}, headers=headers
        )
        assert bound.status_code == 201 and bound.json()["email"] == "bound@example.com"

        # No code, a made-up code, a code bound to someone else: 403, nothing created.
        assert_error(await register(http, "stranger@example.com"), 403, "forbidden")
        assert_error(await register(http, "stranger@example.com", invitation="made-up"), 403)
        assert_error(await register(http, "stranger@example.com", invitation=bound.json()["code"]), 403)
        assert_error(await login_response(http, "stranger@example.com"), 401)

        # The bound code works for its address; the open one for anyone, once.
        assert (await register(http, "bound@example.com", invitation=bound.json()["code"])).status_code == 201
        assert (await register(http, "friend@example.com", invitation=open_code["code"])).status_code == 201
        await login(http, "bound@example.com")
        await login(http, "friend@example.com")
        assert_error(await register(http, "third@example.com", invitation=open_code["code"]), 403)

        # A taken address with a bad code is refused like any other: the answer reveals nothing.
        assert_error(await register(http, "friend@example.com", invitation="made-up"), 403)
        # Only administrators invite.
        _, user = await login_pair(http, "friend@example.com")
        assert_error(await http.post("/api/admin/invitations", json={}, headers=bearer(user)), 403)
        created = await audit_events(app, "invitation_created")
        assert len(created) == 2 and all("code" not in str(e.details) for e in created)


async def make_admin_in_invite_mode(app: Any, http: httpx.AsyncClient) -> tuple[str, dict[str, Any]]:
    """An administrator created directly (registration itself needs an invitation here)."""
    user = await app.state.identity.service().create_user("boss@example.com", PASSWORD, Role.ADMIN, Context())
    return user.id, await login(http, "boss@example.com")


async def login_response(http: httpx.AsyncClient, email: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})


async def login_pair(http: httpx.AsyncClient, email: str) -> tuple[str, str]:
    tokens = await login(http, email)
    return email, str(tokens["access_token"])


async def test_invitations_from_the_command_line(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, REGISTRATION="invite")
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    # Invitation codes are hashed under SESSION_SECRET: the command and the server share it.
    env = cli_env(settings, REGISTRATION="invite", SESSION_SECRET=settings.secret("SESSION_SECRET") or "")
    invited = await asyncio.to_thread(run_cli, env, "users", "invite", "--email", "cli@example.com")
    assert invited.returncode == 0, invited.stderr
    code = invited.stdout.splitlines()[0]
    created = await asyncio.to_thread(
        run_cli, env, "users", "create", "--email", "made@example.com", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert created.returncode == 0 and "created user" in created.stdout, created.stderr
    async with identity_app(settings, migrate_first=False) as (_app, http):
        assert (await register(http, "cli@example.com", invitation=code)).status_code == 201
        await login(http, "cli@example.com")
        await login(http, "made@example.com")


# -- API_KEY_SELF_SERVICE and scopes ---------------------------------------------------------------


async def test_without_self_service_only_administrators_issue_keys(settings_for: Any) -> None:
    async with identity_app(settings_for(API_KEY_SELF_SERVICE=False)) as (app, http):
        user_id, user = await user_session(http, "user@example.com")
        _, admin = await make_admin(app, http, "admin@example.com")
        refused = await http.post(
            "/api/keys", json={"name": "mine", "scopes": ["chat"]}, headers=bearer(user["access_token"])
        )
        assert "API_KEY_SELF_SERVICE" in assert_error(refused, 403, "forbidden")["message"]
        issued = await create_key(http, admin["access_token"], user_id=user_id)
        # The user sees, uses and revokes the key an administrator issued.
        listed = await http.get("/api/keys", headers=bearer(user["access_token"]))
        assert [k["id"] for k in listed.json()["items"]] == [issued["id"]]
        sessions = await http.get("/api/sessions", headers={"X-API-Key": issued["key"]})
        assert sessions.status_code == 200
        revoked = await http.delete(f"/api/keys/{issued['id']}", headers=bearer(user["access_token"]))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None


async def test_a_users_monitoring_key_is_refused_at_creation(settings_for: Any) -> None:
    """The review's monitoring key: on a user's key the scope would name nothing the user holds."""
    async with identity_app(settings_for()) as (_app, http):
        _, user = await user_session(http, "user@example.com")
        refused = await http.post(
            "/api/keys", json={"name": "m", "scopes": ["monitoring"]}, headers=bearer(user["access_token"])
        )
        assert_error(refused, 422, "validation_error")


# -- allowances ---------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def limiter_settings(request: pytest.FixtureRequest, make_settings: SettingsFactory) -> Settings:
    redis = {"REDIS_URL": request.getfixturevalue("redis_url")} if request.param == "redis" else {}
    return identity_settings(
        make_settings, RATE_LIMIT_MESSAGES_PER_HOUR=3, RATE_LIMIT_MESSAGES="1000/minute", **redis
    )


async def send(http: httpx.AsyncClient, key: str) -> int:
    headers = {"X-API-Key": key}
    session = await http.post("/api/sessions", json={}, headers=headers)
    assert session.status_code == 201, session.text
    message = await http.post(
        f"/api/sessions/{session.json()['id']}/messages", json={"content": "hello"}, headers=headers
    )
    return message.status_code


async def test_users_cannot_raise_their_own_allowance(limiter_settings: Settings) -> None:
    async with identity_app(limiter_settings) as (app, http):
        user_id, user = await user_session(http, "user@example.com")
        token = user["access_token"]
        too_much = await http.post(
            "/api/keys",
            json={"name": "big", "scopes": ["chat"], "messages_per_hour": 1_000_000},
            headers=bearer(token),
        )
        assert "administrators" in assert_error(too_much, 403, "forbidden")["message"]
        lower = await create_key(http, token, messages_per_hour=2)
        assert lower["messages_per_hour"] == 2
        assert [await send(http, lower["key"]) for _ in range(3)] == [200, 200, 429]

        # An administrator may raise one key's allowance; it raises that key's share of the budget.
        _, admin = await make_admin(app, http, "admin@example.com")
        raised = await create_key(http, admin["access_token"], user_id=user_id, messages_per_hour=6)
        assert [await send(http, raised["key"]) for _ in range(5)] == [200] * 5


async def test_a_users_keys_share_one_hourly_budget(limiter_settings: Settings) -> None:
    """Each of a user's keys had its own bucket: a hundred keys, a hundred allowances."""
    async with identity_app(limiter_settings) as (_app, http):
        _, user = await user_session(http, "user@example.com")
        keys = [(await create_key(http, user["access_token"]))["key"] for _ in range(3)]
        statuses = [await send(http, key) for key in keys] + [await send(http, keys[0])]
        assert statuses == [200, 200, 200, 429]
        # Another user's budget is their own.
        _, other = await user_session(http, "other@example.com")
        other_key = (await create_key(http, other["access_token"]))["key"]
        assert await send(http, other_key) == 200


# -- the deploy check -------------------------------------------------------------------------------


def test_the_deploy_check_warns_when_strangers_can_mint_keys(make_settings: SettingsFactory) -> None:
    message = "REQUIRE_API_KEY=true with REGISTRATION=open and API_KEY_SELF_SERVICE=true"
    assert any(message in w for w in make_settings(REQUIRE_API_KEY=True).warnings())
    for safer in ({"REGISTRATION": "invite"}, {"REGISTRATION": "closed"}, {"API_KEY_SELF_SERVICE": False}):
        assert not any(message in w for w in make_settings(REQUIRE_API_KEY=True, **safer).warnings())
    assert not any(message in w for w in make_settings(REQUIRE_API_KEY=False).warnings())
