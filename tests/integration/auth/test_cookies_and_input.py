# SPDX-License-Identifier: Apache-2.0
"""Cookie sessions with CSRF, hostile input on every identity endpoint, readiness for operators."""

from __future__ import annotations

import json

import httpx

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    register,
    user_session,
)


async def cookie_login(http: httpx.AsyncClient, email: str) -> str:
    response = await http.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "mode": "cookie"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "cookie" and "access_token" not in body and "refresh_token" not in body
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    for name in ("bastion_access", "bastion_refresh"):
        assert "HttpOnly" in cookies[name] and "SameSite=strict" in cookies[name]
    assert "HttpOnly" not in cookies["bastion_csrf"]
    assert "Path=/api/auth" in cookies["bastion_refresh"]
    assert body["csrf_token"] == http.cookies["bastion_csrf"]
    return str(body["csrf_token"])


async def test_cookie_session_needs_csrf_for_state_changes(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        await register(http, "browser@example.com")
        csrf = await cookie_login(http, "browser@example.com")
        assert (await http.get("/api/auth/me")).status_code == 200  # safe method: cookie alone
        assert_error(await http.post("/api/auth/logout-all"), 403, "csrf_failed")
        assert_error(
            await http.post("/api/auth/logout-all", headers={"X-CSRF-Token": "x.y"}), 403, "csrf_failed"
        )
        # A token signed for another session is useless here.
        other = httpx.AsyncClient(transport=http._transport, base_url="http://localhost")
        async with other:
            await register(other, "other@example.com")
            foreign = await cookie_login(other, "other@example.com")
        forged = await http.post("/api/auth/logout-all", headers={"X-CSRF-Token": foreign})
        assert_error(forged, 403, "csrf_failed")

        # Refresh from the cookie rotates it and needs the CSRF header too.
        assert_error(await http.post("/api/auth/refresh"), 403, "csrf_failed")
        old_refresh = http.cookies["bastion_refresh"]
        rotated = await http.post("/api/auth/refresh", headers={"X-CSRF-Token": csrf})
        assert rotated.status_code == 200 and rotated.json()["token_type"] == "cookie"
        assert http.cookies["bastion_refresh"] != old_refresh
        csrf = rotated.json()["csrf_token"]

        logout = await http.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
        assert logout.status_code == 204
        assert "bastion_access" not in http.cookies
        assert_error(await http.get("/api/auth/me"), 401)
        # Bearer requests need no CSRF token.
        _, tokens = await user_session(http, "api@example.com")
        assert (
            await http.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204


async def test_cookies_are_secure_over_https(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, FORCE_HTTPS=True)
    async with identity_app(settings, base_url="https://localhost") as (_app, http):
        await register(http, "secure@example.com")
        response = await http.post(
            "/api/auth/login", json={"email": "secure@example.com", "password": PASSWORD, "mode": "cookie"}
        )
        cookies = response.headers.get_list("set-cookie")
        assert response.status_code == 200 and len(cookies) == 3
        assert all("Secure" in c for c in cookies)
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")


async def test_hostile_input_gets_clear_4xx(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        _, tokens = await user_session(http, "input@example.com")
        auth = bearer(tokens["access_token"])
        malformed = await http.post(
            "/api/auth/login",
            content=b'{"email": "x@example.com", "password":',
            headers={"Content-Type": "application/json"},
        )
        assert_error(malformed, 400, "malformed_json")
        cases: list[tuple[str, object, int]] = [
            ("/api/auth/register", {}, 422),
            ("/api/auth/register", {"email": "a@example.com"}, 422),
            ("/api/auth/register", {"email": 5, "password": PASSWORD}, 422),
            ("/api/auth/register", {"email": "a@example.com", "password": 123456789012345}, 422),
            ("/api/auth/register", {"email": ["a@example.com"], "password": PASSWORD}, 422),
            ("/api/auth/register", {"email": "a@example.com", "password": "x" * 10_000_000}, 413),
            ("/api/auth/register", {"email": "a@example.com", "password": "x" * 500_000}, 422),
            ("/api/auth/register", {"email": "a@example.com", "password": "Aa1!" * 257}, 422),
            ("/api/auth/register", {"email": "a@example.com", "password": PASSWORD, "role": "admin"}, 422),
            (
                "/api/auth/register",
                {"email": "p\u0430ypal@example.com", "password": PASSWORD},
                422,
            ),  # Cyrillic a
            ("/api/auth/register", {"email": "a\u200b@example.com", "password": PASSWORD}, 422),
            ("/api/auth/register", {"email": "a\uff20example.com", "password": PASSWORD}, 422),
            ("/api/auth/register", {"email": "a@ex\u0430mple.com", "password": PASSWORD}, 422),
            ("/api/auth/register", {"email": "not-an-email", "password": PASSWORD}, 422),
            ("/api/auth/register", {"email": "a@example.com", "password": "password"}, 422),
            ("/api/auth/register", [1, 2], 422),
            ("/api/auth/register", "just a string", 422),
            ("/api/auth/login", {"email": "a@example.com", "password": None}, 422),
            ("/api/auth/login", {"email": "a@example.com", "password": PASSWORD, "mode": "magic"}, 422),
            ("/api/auth/refresh", {"refresh_token": 12}, 422),
            ("/api/auth/refresh", {"refresh_token": "x" * 5000}, 422),
            ("/api/auth/refresh", {"refresh_token": "short"}, 401),
            ("/api/auth/password-reset", {"email": {"$ne": 1}}, 422),
            ("/api/auth/password-reset/confirm", {"token": "abc"}, 422),
            ("/api/auth/password-reset/confirm", {"token": "abc", "new_password": "Fine-Password-9!"}, 401),
        ]
        for path, body, status in cases:
            response = await http.post(
                path, content=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            detail = assert_error(response, status)
            assert "x" * 100 not in response.text, path  # a rejected value is never echoed back
            assert detail["request_id"]
        password_case = await http.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": "y" * 2000},
            headers=auth,
        )
        assert_error(password_case, 422)
        # Long passwords are accepted whole: 200 characters, bcrypt or argon2, never truncated.
        long_password = "Long-Pass-1!" + "x7Y-" * 47
        await register(http, "verbose@example.com", long_password)
        ok = await http.post(
            "/api/auth/login", json={"email": "verbose@example.com", "password": long_password}
        )
        assert ok.status_code == 200
        truncated = await http.post(
            "/api/auth/login", json={"email": "verbose@example.com", "password": long_password[:72]}
        )
        assert_error(truncated, 401)


async def test_readiness_allows_operators_from_anywhere(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings)
    async with identity_app(settings, client=("203.0.113.7", 4000)) as (app, http):
        assert_error(await http.get("/health/ready"), 403)
        _, user = await user_session(http, "plain@example.com")
        assert_error(await http.get("/health/ready", headers=bearer(user["access_token"])), 403)
        _, admin = await make_admin(app, http, "ops@example.com")
        assert (await http.get("/health/ready", headers=bearer(admin["access_token"]))).status_code == 200


async def test_password_spraying_from_one_address_is_throttled(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, LOGIN_IP_MAX_FAILURES=3)
    async with identity_app(settings, client=("198.51.100.4", 5000)) as (_app, http):
        for n in range(3):
            wrong = await http.post(
                "/api/auth/login", json={"email": f"target{n}@example.com", "password": PASSWORD}
            )
            assert_error(wrong, 401)
        blocked = await http.post(
            "/api/auth/login", json={"email": "fresh@example.com", "password": PASSWORD}
        )
        detail = assert_error(blocked, 429, "rate_limited")
        assert detail["retry_after"] >= 1 and int(blocked.headers["retry-after"]) >= 1


async def test_json_routes_refuse_other_content_types(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings)) as (_app, http):
        body = f'{{"email": "ct@example.com", "password": "{PASSWORD}"}}'
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ):
            response = await http.post(
                "/api/auth/login", content=body, headers={"Content-Type": content_type}
            )
            assert_error(response, 415)
        ok = await http.post("/api/auth/register", content=body, headers={"Content-Type": "application/json"})
        assert ok.status_code == 201
        assert ok.headers["content-type"] == "application/json; charset=utf-8"
