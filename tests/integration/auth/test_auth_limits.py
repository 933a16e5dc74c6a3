# SPDX-License-Identifier: Apache-2.0
"""The identity routes under their rate-limit policies, and failed logins feeding automatic blocks."""

from __future__ import annotations

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    assert_error,
    audit_events,
    identity_app,
    identity_settings,
    register,
)


async def test_login_policy_allows_the_burst_then_429(make_settings: SettingsFactory) -> None:
    settings = identity_settings(make_settings, RATE_LIMIT_LOGIN="5/minute;burst=3")
    async with identity_app(settings) as (_app, http):
        await register(http, "burst@example.com")
        body = {"email": "burst@example.com", "password": PASSWORD}
        admitted = [await http.post("/api/auth/login", json=body) for _ in range(3)]
        assert [r.status_code for r in admitted] == [200, 200, 200]
        assert [r.headers["x-ratelimit-remaining"] for r in admitted] == ["2", "1", "0"]
        assert admitted[0].headers["x-ratelimit-limit"] == "5"  # the rate; the burst is 3
        refused = await http.post("/api/auth/login", json=body)
        detail = assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) == detail["retry_after"] >= 1


async def test_register_policy(make_settings: SettingsFactory) -> None:
    async with identity_app(identity_settings(make_settings, RATE_LIMIT_REGISTER="3/minute")) as (_app, http):
        for i in range(3):
            await register(http, f"r{i}@example.com")
        response = await http.post(
            "/api/auth/register", json={"email": "r9@example.com", "password": PASSWORD}
        )
        assert_error(response, 429, "rate_limited")


async def test_password_reset_is_limited_per_address_across_clients(make_settings: SettingsFactory) -> None:
    settings = identity_settings(
        make_settings, TRUSTED_PROXIES="127.0.0.1", RATE_LIMIT_PASSWORD_RESET="3/minute"
    )
    async with identity_app(settings) as (_app, http):
        statuses = []
        for i in range(4):  # a different client address each time, the same target inbox
            response = await http.post(
                "/api/auth/password-reset",
                json={"email": "victim@example.com"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(response.status_code)
        assert statuses == [202, 202, 202, 429]
        other = await http.post(
            "/api/auth/password-reset",
            json={"email": "else@example.com"},
            headers={"X-Forwarded-For": "198.51.100.9"},
        )
        assert other.status_code == 202


async def test_failed_logins_block_the_address(make_settings: SettingsFactory) -> None:
    settings = identity_settings(
        make_settings,
        TRUSTED_PROXIES="127.0.0.1",
        RATE_LIMIT_BLOCK_AUTH_FAILURES=3,
    )
    async with identity_app(settings) as (app, http):
        await register(http, "target@example.com")
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        wrong = {"email": "target@example.com", "password": "Wrong-Password-1!"}
        for _ in range(3):
            assert_error(await http.post("/api/auth/login", json=wrong, headers=attacker), 401)
        assert_error(await http.post("/api/auth/login", json=wrong, headers=attacker), 403, "blocked")
        assert_error(await http.get("/api/auth/me", headers=attacker), 403, "blocked")
        # The account owner, elsewhere, is not locked out by the attacker's failures.
        good = {"email": "target@example.com", "password": PASSWORD}
        assert (
            await http.post("/api/auth/login", json=good, headers={"X-Forwarded-For": "192.0.2.7"})
        ).status_code == 200
        blocked = await audit_events(app, "client_blocked")
        assert len(blocked) == 1 and "203.0.113.66" in str(blocked[0].details) + str(blocked[0].target_id)
