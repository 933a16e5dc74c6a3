# SPDX-License-Identifier: Apache-2.0
"""Ending a session refuses every access token of it at once: on SQLite and PostgreSQL, in memory
and in Redis.

Each ending is checked the way a client sees it (the older access tokens answer 401) and the way an
operator does (the refusal is audited as ``revoked``: the session denylist refused the token, not
only the token-version check behind it).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.audit.events import AuditEvent
from bastion.auth.models import PasswordResetToken
from bastion.auth.repository import IdentityRepository
from bastion.auth.service import RESET_PURPOSE
from bastion.db.session import unit_of_work
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    NEW_PASSWORD,
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


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def settings_for(request: pytest.FixtureRequest, make_settings: SettingsFactory, database_url: str) -> Any:
    redis = {} if request.param == "memory" else {"REDIS_URL": request.getfixturevalue("redis_url")}

    def factory(**overrides: Any) -> Any:
        return identity_settings(make_settings, DATABASE_URL=database_url, **redis, **overrides)

    return factory


async def me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/api/auth/me", headers=bearer(token))


async def refused_as_revoked(app: FastAPI, http: httpx.AsyncClient, *tokens: str) -> None:
    """Every token answers 401, and the session denylist is what refused it."""
    identity = app.state.identity
    for token in tokens:
        before = len(await audit_events(app, AuditEvent.AUTH_FAILURE))
        assert_error(await me(http, token), 401)
        rejections = await audit_events(app, AuditEvent.AUTH_FAILURE)
        assert len(rejections) == before + 1
        assert rejections[-1].details["reason"] == "revoked", rejections[-1].details
        assert await identity.revocations.refused(identity.access_tokens.verify(token))


async def refreshed(http: httpx.AsyncClient, refresh_token: str) -> dict[str, Any]:
    response = await http.post("/api/auth/refresh", json={"refresh_token": refresh_token})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_logout_refuses_the_tokens_issued_before_a_refresh(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        _, first = await user_session(http, "a1a2@example.com")
        other = await login(http, "a1a2@example.com")  # another device: another session
        second = await refreshed(http, first["refresh_token"])
        assert (await me(http, first["access_token"])).status_code == 200  # A1 still valid here
        assert (
            await http.post("/api/auth/logout", headers=bearer(second["access_token"]))
        ).status_code == 204
        await refused_as_revoked(app, http, first["access_token"], second["access_token"])
        # Only that session ended.
        assert (await me(http, other["access_token"])).status_code == 200


async def test_logout_ends_the_session_of_the_refresh_token_it_names_too(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        _, tokens = await user_session(http, "cookieless@example.com")
        other = await login(http, "cookieless@example.com")
        ended = await http.post(
            "/api/auth/logout",
            headers=bearer(other["access_token"]),
            json={"refresh_token": tokens["refresh_token"]},
        )
        assert ended.status_code == 204
        await refused_as_revoked(app, http, tokens["access_token"], other["access_token"])


async def test_refresh_reuse_refuses_every_access_token_of_the_family(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        _, first = await user_session(http, "family@example.com")
        other = await login(http, "family@example.com")
        second = await refreshed(http, first["refresh_token"])
        third = await refreshed(http, second["refresh_token"])
        # The first refresh token comes back (a copy): the family ends, access tokens included.
        assert_error(
            await http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401
        )
        await refused_as_revoked(
            app, http, first["access_token"], second["access_token"], third["access_token"]
        )
        assert (await me(http, other["access_token"])).status_code == 200


async def _reset_password(app: FastAPI, http: httpx.AsyncClient, user_id: str) -> None:
    identity = app.state.identity
    token = identity.secret_tokens.generate()
    now = identity.clock()
    async with unit_of_work(identity.sessionmaker) as session:
        await IdentityRepository(session).add_reset_token(
            PasswordResetToken(
                user_id=user_id,
                token_hash=identity.secret_tokens.digest(token, purpose=RESET_PURPOSE),
                created_at=now,
                expires_at=now + identity.service().reset_lifetime,
            )
        )
    response = await http.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text


# name -> (path, body, who calls: the user's own token or an admin, answer)
HTTP_ENDINGS: dict[str, tuple[str, dict[str, str] | None, str, int]] = {
    "logout_all": ("/api/auth/logout-all", None, "user", 204),
    "admin_logout_all": ("/api/admin/users/{uid}/logout-all", None, "admin", 204),
    "password_change": (
        "/api/auth/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        "user",
        200,
    ),
    "disable": ("/api/admin/users/{uid}/disable", None, "admin", 200),
    "role_change": ("/api/admin/users/{uid}/role", {"role": "admin"}, "admin", 200),
}


async def test_user_wide_endings_refuse_every_older_access_token(settings_for: Any) -> None:
    async with identity_app(settings_for()) as (app, http):
        _, admin_tokens = await make_admin(app, http, "root@example.com")
        admin = bearer(admin_tokens["access_token"])
        for name in [*HTTP_ENDINGS, "password_reset"]:
            user_id, first = await user_session(http, f"{name}@example.com")
            second = await refreshed(http, first["refresh_token"])
            other = await login(http, f"{name}@example.com")
            bystander_id, bystander = await user_session(http, f"bystander-{name}@example.com")
            if name == "password_reset":
                await _reset_password(app, http, user_id)
            else:
                path, body, who, answer = HTTP_ENDINGS[name]
                caller = admin if who == "admin" else bearer(second["access_token"])
                response = await http.post(path.format(uid=user_id), headers=caller, json=body)
                assert response.status_code == answer, (name, response.text)
                if name == "password_change":  # its new pair opens a new session, which works
                    assert (await me(http, response.json()["access_token"])).status_code == 200
            await refused_as_revoked(
                app, http, first["access_token"], second["access_token"], other["access_token"]
            )
            assert (await me(http, bystander["access_token"])).status_code == 200, name
            assert bystander_id != user_id
