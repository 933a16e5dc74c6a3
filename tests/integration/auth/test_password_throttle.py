# SPDX-License-Identifier: Apache-2.0
"""Brute force against every password check: per (account, client) delays that spare the owner,
an account lock only from many clients, lifted by a password reset or an administrator."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.audit.events import AuditEvent
from bastion.auth.mailer import Mail
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    assert_error,
    audit_events,
    bearer,
    identity_app,
    identity_settings,
    make_admin,
    register,
    user_session,
)

WRONG = "Wrong-Guess-42!x"


@pytest.fixture
def settings_for(make_settings: SettingsFactory, database_url: str) -> Callable[..., Any]:
    def factory(**overrides: Any) -> Any:
        return identity_settings(
            make_settings, DATABASE_URL=database_url, TRUSTED_PROXIES="127.0.0.1", **overrides
        )

    return factory


class Clock:
    """Replaces the throttle's clock: the test moves time instead of sleeping."""

    def __init__(self, app: FastAPI) -> None:
        self.now = 1_700_000_000.0
        app.state.identity.throttle.clock = self

    def __call__(self) -> float:
        return self.now


class Outbox:
    def __init__(self, app: FastAPI) -> None:
        self.sent: list[Mail] = []
        self.runtime = app.state.identity
        self.runtime.mailer = self

    async def send(self, mail: Mail) -> None:
        self.sent.append(mail)

    async def token(self) -> str:
        await asyncio.wait(set(self.runtime.background))
        match = re.search(r"#token=(\S+)", self.sent[-1].body)
        assert match
        return match.group(1)


def client(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def attempt(http: httpx.AsyncClient, email: str, password: str, ip: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"email": email, "password": password}, headers=client(ip))


async def lock_account(http: httpx.AsyncClient, email: str, clients: int, first: int = 0) -> None:
    """Two failures from each of ``clients`` addresses (the pair delay starts at the third)."""
    for n in range(first, first + clients):
        for _ in range(2):
            assert_error(await attempt(http, email, WRONG, f"198.51.100.{n}"), 401)


async def test_password_change_guesses_are_throttled(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (app, http):
        clock = Clock(app)
        user_id, tokens = await user_session(http, "pat@example.com")
        auth = bearer(tokens["access_token"])
        statuses, waits = [], []
        for _ in range(40):
            response = await http.post(
                "/api/auth/password",
                json={"current_password": WRONG, "new_password": NEW_PASSWORD},
                headers=auth,
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                waits.append(assert_error(response, 429, "rate_limited")["retry_after"])
        assert statuses == [401] * 3 + [429] * 37
        assert all(int(w) >= 1 for w in waits)
        # The right password is refused too until the wait has passed...
        right = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        refused = await http.post("/api/auth/password", json=right, headers=auth)
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) == waits[-1]
        clock.now += waits[-1]
        changed = await http.post("/api/auth/password", json=right, headers=auth)
        assert changed.status_code == 200, changed.text
        assert {"access_token", "refresh_token"} <= changed.json().keys()
        failed = [r for r in await audit_events(app, AuditEvent.PASSWORD_CHANGED) if r.result != "success"]
        assert len(failed) == 41 and all(r.target_id == user_id for r in failed)
        assert all(WRONG not in str(r.details) for r in failed)


async def test_password_change_shares_the_login_counts(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (_app, http):
        _, tokens = await user_session(http, "quinn@example.com")
        for _ in range(2):
            assert_error(await attempt(http, "quinn@example.com", WRONG, "127.0.0.1"), 401)
        changed = await http.post(
            "/api/auth/password",
            json={"current_password": WRONG, "new_password": NEW_PASSWORD},
            headers=bearer(tokens["access_token"]),
        )
        assert_error(changed, 401)  # the third failure for this account from this client
        assert_error(await attempt(http, "quinn@example.com", PASSWORD, "127.0.0.1"), 429)


async def test_password_change_has_a_route_limit_per_user(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for(RATE_LIMIT_PASSWORD_CHANGE="2/minute;burst=2")) as (_app, http):
        _, tokens = await user_session(http, "rae@example.com")
        body = {"current_password": WRONG, "new_password": NEW_PASSWORD}
        for n in range(2):  # different addresses: the route limit counts the user
            assert_error(
                await http.post(
                    "/api/auth/password",
                    json=body,
                    headers={**bearer(tokens["access_token"]), **client(f"192.0.2.{n}")},
                ),
                401,
            )
        limited = await http.post(
            "/api/auth/password",
            json=body,
            headers={**bearer(tokens["access_token"]), **client("192.0.2.9")},
        )
        assert_error(limited, 429, "rate_limited")


async def test_wrong_current_passwords_feed_automatic_blocks(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for(RATE_LIMIT_BLOCK_AUTH_FAILURES=2)) as (app, http):
        _, tokens = await user_session(http, "sam@example.com")
        headers = {**bearer(tokens["access_token"]), **client("203.0.113.5")}
        body = {"current_password": WRONG, "new_password": NEW_PASSWORD}
        for _ in range(2):
            assert_error(await http.post("/api/auth/password", json=body, headers=headers), 401)
        assert_error(await http.post("/api/auth/password", json=body, headers=headers), 403, "blocked")
        assert len(await audit_events(app, "client_blocked")) == 1


async def test_failures_from_one_client_do_not_lock_out_the_owner(settings_for: Callable[..., Any]) -> None:
    async with identity_app(settings_for()) as (app, http):
        clock = Clock(app)
        await register(http, "tess@example.com")
        attacker = "203.0.113.66"
        statuses = [(await attempt(http, "tess@example.com", WRONG, attacker)).status_code for _ in range(8)]
        assert statuses == [401, 401, 401] + [429] * 5
        waits = []
        for _ in range(3):  # the attacker honours Retry-After and fails again: the wait doubles
            refused = await attempt(http, "tess@example.com", WRONG, attacker)
            wait = int(assert_error(refused, 429, "rate_limited")["retry_after"])
            waits.append(wait)
            clock.now += wait
            assert_error(await attempt(http, "tess@example.com", WRONG, attacker), 401)
        assert waits[1] == 2 * waits[0] and waits[2] == 2 * waits[1]
        assert_error(await attempt(http, "tess@example.com", PASSWORD, attacker), 429)
        # The owner, elsewhere, signs in at once; the account was never locked.
        owner = await attempt(http, "tess@example.com", PASSWORD, "192.0.2.7")
        assert owner.status_code == 200, owner.text
        assert await audit_events(app, AuditEvent.ACCOUNT_LOCKED) == []


async def test_many_clients_lock_the_account_and_a_reset_unlocks(settings_for: Callable[..., Any]) -> None:
    settings = settings_for(LOGIN_LOCK_FAILURES=6, LOGIN_LOCK_CLIENTS=3)
    async with identity_app(settings) as (app, http):
        outbox = Outbox(app)
        user_id, _ = await user_session(http, "uma@example.com")
        await lock_account(http, "uma@example.com", clients=2)  # 4 failures, 2 clients: no lock
        assert (await attempt(http, "uma@example.com", PASSWORD, "192.0.2.7")).status_code == 200
        # The owner's success restarted the count: 6 consecutive failures from 3 clients lock.
        await lock_account(http, "uma@example.com", clients=3, first=10)
        locked = await attempt(http, "uma@example.com", PASSWORD, "192.0.2.7")
        detail = assert_error(locked, 429, "rate_limited")
        assert detail["retry_after"] >= 15 * 60 - 1
        events = await audit_events(app, AuditEvent.ACCOUNT_LOCKED)
        assert [e.target_id for e in events] == [user_id]
        # An address without an account locks the same way: the answer reveals nothing.
        await lock_account(http, "ghost@example.com", clients=3)
        assert_error(await attempt(http, "ghost@example.com", PASSWORD, "192.0.2.7"), 429, "rate_limited")

        reset = await http.post(
            "/api/auth/password-reset", json={"email": "uma@example.com"}, headers=client("192.0.2.7")
        )
        assert reset.status_code == 202
        confirmed = await http.post(
            "/api/auth/password-reset/confirm",
            json={"token": await outbox.token(), "new_password": NEW_PASSWORD},
            headers=client("192.0.2.7"),
        )
        assert confirmed.status_code == 204, confirmed.text
        assert (await attempt(http, "uma@example.com", NEW_PASSWORD, "192.0.2.8")).status_code == 200


async def test_an_administrator_unlocks(settings_for: Callable[..., Any]) -> None:
    settings = settings_for(LOGIN_LOCK_FAILURES=4, LOGIN_LOCK_CLIENTS=2)
    async with identity_app(settings) as (app, http):
        admin_id, admin = await make_admin(app, http, "admin@example.com")
        user_id, user = await user_session(http, "vic@example.com")
        await lock_account(http, "vic@example.com", clients=2)
        assert_error(await attempt(http, "vic@example.com", PASSWORD, "192.0.2.7"), 429)
        path = f"/api/admin/users/{user_id}/unlock"
        assert_error(await http.post(path, headers=bearer(user["access_token"])), 403)
        assert_error(await http.post(path), 401)
        unlocked = await http.post(path, headers=bearer(admin["access_token"]))
        assert unlocked.status_code == 200 and unlocked.json()["id"] == user_id
        assert (await attempt(http, "vic@example.com", PASSWORD, "192.0.2.7")).status_code == 200
        records = await audit_events(app, AuditEvent.ACCOUNT_UNLOCKED)
        assert [(r.actor_id, r.target_id, r.details) for r in records] == [
            (admin_id, user_id, {"was_locked": True})
        ]
        missing = await http.post("/api/admin/users/0123abcd/unlock", headers=bearer(admin["access_token"]))
        assert_error(missing, 404)
