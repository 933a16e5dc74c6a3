# SPDX-License-Identifier: Apache-2.0
"""Every route against every kind of caller (OWASP API5) and a committed inventory (API9).

The inventory is the reviewed list of what the service exposes and who may call it: a route added
without being listed here fails the suite, so nothing ships unreviewed. The matrix calls every
route and method as an anonymous client, a user and an admin, and checks the answer class; no
combination may produce a 500.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, make_admin, user_session

# (method, path) -> who may call it. public: anyone; user: any signed-in caller with the route's
# permission; admin: admins only; operator: local callers, admins and services.
INVENTORY: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("GET", "/health/ready"): "operator",
    ("GET", "/.well-known/jwks.json"): "public",
    ("POST", "/api/auth/register"): "public",
    ("POST", "/api/auth/login"): "public",
    ("POST", "/api/auth/refresh"): "public",
    ("POST", "/api/auth/logout"): "user",
    ("POST", "/api/auth/logout-all"): "user",
    ("GET", "/api/auth/me"): "user",
    ("POST", "/api/auth/password"): "user",
    ("POST", "/api/auth/password-reset"): "public",
    ("POST", "/api/auth/password-reset/confirm"): "public",
    ("GET", "/api/admin/users/{user_id}"): "admin",
    ("POST", "/api/admin/users/{user_id}/role"): "admin",
    ("POST", "/api/admin/users/{user_id}/disable"): "admin",
    ("POST", "/api/admin/users/{user_id}/enable"): "admin",
    ("POST", "/api/admin/users/{user_id}/logout-all"): "admin",
    ("GET", "/api/admin/blocklist"): "admin",
    ("POST", "/api/admin/blocklist"): "admin",
    ("DELETE", "/api/admin/blocklist/{kind}/{value}"): "admin",
    ("DELETE", "/api/admin/blocklist/{kind}/{address}/{prefix}"): "admin",
    ("GET", "/api/admin/blocks"): "admin",
    ("POST", "/api/admin/blocks"): "admin",
    ("DELETE", "/api/admin/blocks/{kind}/{value}"): "admin",
    ("DELETE", "/api/admin/blocks/{kind}/{address}/{prefix}"): "admin",
    ("GET", "/api/admin/keys"): "admin",
    ("POST", "/api/keys"): "user",
    ("GET", "/api/keys"): "user",
    ("GET", "/api/keys/{key_id}"): "user",
    ("DELETE", "/api/keys/{key_id}"): "user",
    ("POST", "/api/keys/{key_id}/rotate"): "user",
    ("POST", "/api/sessions"): "user",
    ("GET", "/api/sessions"): "user",
    ("GET", "/api/sessions/{session_id}"): "user",
    ("DELETE", "/api/sessions/{session_id}"): "user",
    ("GET", "/api/sessions/{session_id}/messages"): "user",
    ("POST", "/api/sessions/{session_id}/messages"): "user",
    ("POST", "/api/sessions/{session_id}/voice-chat"): "user",
    ("POST", "/v1/chat/completions"): "user",
}

PARAMS = {
    "user_id": "0" * 32,
    "kind": "ip",
    "value": "192.0.2.1",
    "address": "192.0.2.0",
    "prefix": "24",
    "key_id": "0" * 16,
    "session_id": "x" * 24,
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
FORBIDDEN_IN_RESPONSES = (
    "password_hash",
    "token_hash",
    "key_hash",
    "secret_hash",
    "ciphertext",
    "$argon2",
    "$2b$",
)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS[m.group(1)], path)


def exposed(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in openapi["paths"].items()
        for method in operations
        if method.upper() in METHODS
    }


@pytest.fixture
async def callers(make_settings: SettingsFactory):  # type: ignore[no-untyped-def]
    settings = identity_settings(
        make_settings, RATE_LIMIT_PER_MINUTE=100_000, RATE_LIMIT_MESSAGES="10000/minute"
    )
    async with identity_app(settings, client=("203.0.113.5", 4000)) as (app, http):
        _, user_tokens = await user_session(http, "matrix-user@example.com")
        _, admin_tokens = await make_admin(app, http, "matrix-admin@example.com")
        yield (
            app,
            http,
            {
                "anonymous": {},
                "user": bearer(user_tokens["access_token"]),
                "admin": bearer(admin_tokens["access_token"]),
            },
        )


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = None if method in ("GET", "DELETE") else {}
    return await http.request(method, concrete(path), json=body, headers=headers)


async def test_the_inventory_is_exactly_what_is_exposed(callers) -> None:  # type: ignore[no-untyped-def]
    app, _http, _ = callers
    assert exposed(app.openapi()) == set(INVENTORY)


async def test_every_route_for_every_caller(callers) -> None:  # type: ignore[no-untyped-def]
    _app, http, who = callers
    for (method, path), access in INVENTORY.items():
        if path.startswith("/api/auth/logout") or path == "/api/auth/password":
            continue  # they end the caller's own session; covered by the identity tests
        for caller, headers in who.items():
            response = await call(http, method, path, headers)
            label = (caller, method, path, response.status_code, response.text[:200])
            assert response.status_code < 500, label
            for leak in FORBIDDEN_IN_RESPONSES:  # OWASP API3: stored secrets never leave the server
                assert leak not in response.text, (leak, *label)
            assert "detail" in response.json() or response.status_code < 400, label
            if caller == "anonymous" and access in ("user", "admin"):
                assert response.status_code == 401, label
                assert response.headers["www-authenticate"].startswith("Bearer"), label
            if caller == "anonymous" and access == "operator":
                assert response.status_code == 403, label  # a remote client, not an operator
            if caller == "user" and access == "admin":
                assert response.status_code == 403, label
            entitled = (caller in ("user", "admin") and access == "user") or (caller == access == "admin")
            if entitled:
                assert response.status_code not in (401, 403), label


async def test_methods_outside_the_inventory_are_405(callers) -> None:  # type: ignore[no-untyped-def]
    _app, http, who = callers
    paths = {path for _, path in INVENTORY}
    for path in sorted(paths):
        allowed = {method for method, p in INVENTORY if p == path}
        for method in set(METHODS) - allowed - {"HEAD"}:
            response = await call(http, method, path, who["admin"])
            assert response.status_code == 405, (method, path, response.status_code)
            assert response.json()["detail"]["error"] == "method_not_allowed"
        trace = await http.request("TRACE", concrete(path), headers=who["admin"])
        assert trace.status_code == 405, (path, trace.status_code)


async def test_listings_never_carry_stored_secrets(callers) -> None:  # type: ignore[no-untyped-def]
    """With data in place (a key, a chat session with messages), every GET stays free of secrets."""
    _app, http, who = callers
    created = await http.post("/api/keys", json={"name": "k", "scopes": ["chat"]}, headers=who["user"])
    assert created.status_code == 201
    session = (await http.post("/api/sessions", json={"title": "t"}, headers=who["user"])).json()
    await http.post(f"/api/sessions/{session['id']}/messages", json={"content": "hello"}, headers=who["user"])
    messages = f"/api/sessions/{session['id']}/messages"
    for path in ("/api/keys", "/api/sessions", messages, "/api/auth/me"):
        for caller in ("user", "admin"):
            response = await http.get(path, headers=who[caller])
            # The session is the user's own: an admin is not its owner and gets 404 like anyone else.
            assert response.status_code == (404 if path == messages and caller == "admin" else 200)
            for leak in (*FORBIDDEN_IN_RESPONSES, created.json()["key"]):
                assert leak not in response.text, (path, caller, leak)
    admin_keys = await http.get("/api/admin/keys", headers=who["admin"])
    assert admin_keys.status_code == 200 and created.json()["key"] not in admin_keys.text
