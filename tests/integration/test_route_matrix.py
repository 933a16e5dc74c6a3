# SPDX-License-Identifier: Apache-2.0
"""Every route against every kind of credential (OWASP API5) and a committed inventory (API9).

The inventory is the reviewed list of what the service exposes and the one permission each route
declares: a route added without being listed here, or declaring something else, fails the suite.
The matrix calls every route with every kind of credential Bastion accepts (a user's token, a
browser cookie session with its CSRF token, managed keys of each scope, static API_KEYS and
ML_API_KEYS keys, a mutual-TLS service identity, an administrator's token and key) and checks the
answer against what each credential is declared to hold: the holders never get 401/403, everyone
else gets 403 (401 when anonymous). No combination may produce a 500 or leak a stored secret.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bastion.api.deps import check_route_access
from bastion.auth.permissions import Permission as P
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import (
    PASSWORD,
    bearer,
    identity_app,
    identity_settings,
    login,
    make_admin,
    user_session,
)

PUBLIC = "public"
# (method, path) -> the permission the route declares, or public.
INVENTORY: dict[tuple[str, str], str] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/health/ready"): P.HEALTH_READ,  # also anonymous callers on this machine
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/legal/terms"): PUBLIC,
    ("GET", "/metrics"): P.METRICS_READ,
    ("POST", "/api/auth/register"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/logout"): P.SESSIONS_END,
    ("POST", "/api/auth/logout-all"): P.SESSIONS_END,
    ("GET", "/api/auth/me"): P.PROFILE_READ,
    ("GET", "/api/me/export"): P.ACCOUNT_EXPORT,
    ("DELETE", "/api/me"): P.ACCOUNT_ERASE,
    ("POST", "/api/auth/password"): P.PASSWORD_CHANGE,
    ("POST", "/api/auth/password-reset"): PUBLIC,
    ("POST", "/api/auth/password-reset/confirm"): PUBLIC,
    ("GET", "/api/admin/users"): P.USERS_READ,
    ("GET", "/api/admin/users/{user_id}"): P.USERS_READ,
    ("POST", "/api/admin/users/{user_id}/role"): P.USERS_MANAGE,
    ("POST", "/api/admin/users/{user_id}/disable"): P.USERS_MANAGE,
    ("POST", "/api/admin/users/{user_id}/enable"): P.USERS_MANAGE,
    ("POST", "/api/admin/users/{user_id}/logout-all"): P.USERS_MANAGE,
    ("POST", "/api/admin/users/{user_id}/unlock"): P.USERS_MANAGE,
    ("DELETE", "/api/admin/users/{user_id}"): P.USERS_MANAGE,
    ("POST", "/api/admin/invitations"): P.USERS_MANAGE,
    ("GET", "/api/admin/audit"): P.AUDIT_READ,
    ("GET", "/api/admin/blocklist"): P.BLOCKLIST_MANAGE,
    ("POST", "/api/admin/blocklist"): P.BLOCKLIST_MANAGE,
    ("DELETE", "/api/admin/blocklist/{kind}/{value}"): P.BLOCKLIST_MANAGE,
    ("DELETE", "/api/admin/blocklist/{kind}/{address}/{prefix}"): P.BLOCKLIST_MANAGE,
    ("GET", "/api/admin/blocks"): P.BLOCKLIST_MANAGE,
    ("POST", "/api/admin/blocks"): P.BLOCKLIST_MANAGE,
    ("DELETE", "/api/admin/blocks/{kind}/{value}"): P.BLOCKLIST_MANAGE,
    ("DELETE", "/api/admin/blocks/{kind}/{address}/{prefix}"): P.BLOCKLIST_MANAGE,
    ("GET", "/api/admin/alerts"): P.ALERTS_MANAGE,
    ("POST", "/api/admin/alerts/{alert_id}/acknowledge"): P.ALERTS_MANAGE,
    ("GET", "/api/admin/sessions"): P.CHAT_SESSIONS_MANAGE,
    ("DELETE", "/api/admin/sessions/{session_id}"): P.CHAT_SESSIONS_MANAGE,
    ("GET", "/api/admin/rate-limits/{identity}"): P.RATE_LIMITS_MANAGE,
    ("DELETE", "/api/admin/rate-limits/{identity}"): P.RATE_LIMITS_MANAGE,
    ("GET", "/api/admin/secrets"): P.SECRETS_READ,
    ("GET", "/api/admin/keys"): P.KEYS_MANAGE,
    ("POST", "/api/keys"): P.KEYS_OWN,
    ("GET", "/api/keys"): P.KEYS_OWN,
    ("GET", "/api/keys/{key_id}"): P.KEYS_OWN,
    ("DELETE", "/api/keys/{key_id}"): P.KEYS_OWN,
    ("POST", "/api/keys/{key_id}/rotate"): P.KEYS_OWN,
    ("POST", "/api/sessions"): P.CHAT_USE,
    ("GET", "/api/sessions"): P.CHAT_USE,
    ("GET", "/api/sessions/{session_id}"): P.CHAT_USE,
    ("DELETE", "/api/sessions/{session_id}"): P.CHAT_USE,
    ("GET", "/api/sessions/{session_id}/messages"): P.CHAT_USE,
    ("POST", "/api/sessions/{session_id}/messages"): P.CHAT_USE,
    ("POST", "/api/sessions/{session_id}/voice-chat"): P.VOICE_USE,
    ("POST", "/api/journal"): P.JOURNAL_USE,
    ("GET", "/api/journal"): P.JOURNAL_USE,
    ("GET", "/api/journal/{entry_id}"): P.JOURNAL_USE,
    ("PUT", "/api/journal/{entry_id}"): P.JOURNAL_USE,
    ("DELETE", "/api/journal/{entry_id}"): P.JOURNAL_USE,
    ("POST", "/v1/chat/completions"): P.COMPLETIONS_USE,
    ("GET", "/v1/models"): P.COMPLETIONS_USE,
}
# The admin console's pages and assets: HTML and static files, so not in the OpenAPI document.
# Public on purpose: they hold no data; every figure on them comes from the admin routes above,
# called with the administrator's session.
CONSOLE: dict[tuple[str, str], str] = {
    ("GET", "/admin"): PUBLIC,
    ("GET", "/admin/{name}"): PUBLIC,
    ("GET", "/admin/static/{name}"): PUBLIC,
}

# What each kind of credential holds, written out rather than computed by the code under test.
PERSON = frozenset(
    {
        P.PROFILE_READ,
        P.PASSWORD_CHANGE,
        P.SESSIONS_END,
        P.ACCOUNT_EXPORT,
        P.ACCOUNT_ERASE,
        P.CHAT_USE,
        P.JOURNAL_USE,
        P.KEYS_OWN,
        P.VOICE_USE,
        P.COMPLETIONS_USE,
    }
)
HOLDS: dict[str, frozenset[str]] = {
    "anonymous": frozenset(),
    "user token": PERSON,
    "cookie + csrf": PERSON,
    "admin token": frozenset(P),
    "key chat": frozenset({P.CHAT_USE}),
    "key voice": frozenset({P.VOICE_USE}),
    "key journal": frozenset({P.JOURNAL_USE}),
    "key completions": frozenset({P.COMPLETIONS_USE}),
    "key profile": frozenset({P.PROFILE_READ}),
    "key chat voice journal completions profile": frozenset(
        {P.CHAT_USE, P.VOICE_USE, P.JOURNAL_USE, P.COMPLETIONS_USE, P.PROFILE_READ}
    ),
    "service key monitoring": frozenset({P.HEALTH_READ, P.METRICS_READ}),
    "service key completions": frozenset({P.COMPLETIONS_USE}),
    "admin key": frozenset(
        {
            P.USERS_READ,
            P.USERS_MANAGE,
            P.KEYS_MANAGE,
            P.KEYS_OWN,
            P.BLOCKLIST_MANAGE,
            P.AUDIT_READ,
            P.ALERTS_MANAGE,
            P.CHAT_SESSIONS_MANAGE,
            P.RATE_LIMITS_MANAGE,
            P.SECRETS_READ,
        }
    ),
    "static API_KEYS key": frozenset({P.CHAT_USE, P.JOURNAL_USE, P.VOICE_USE, P.COMPLETIONS_USE}),
    "static ML_API_KEYS key": frozenset({P.COMPLETIONS_USE}),
    "mtls service": frozenset({P.HEALTH_READ, P.METRICS_READ, P.COMPLETIONS_USE}),
}
SESSION_ENDING = {
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/logout-all"),
    ("POST", "/api/auth/password"),
}
STATIC_APP_KEY = "static-app-key-" + "a1" * 20
STATIC_ML_KEY = "static-ml-key-" + "b2" * 20
SUBJECT_HEADER = "X-Client-Cert-Subject"
PROXY = ("10.1.2.3", 443)
REMOTE = ("203.0.113.5", 4000)

PARAMS = {
    "user_id": "0" * 32,
    "kind": "ip",
    "value": "192.0.2.1",
    "address": "192.0.2.0",
    "prefix": "24",
    "key_id": "0" * 16,
    "session_id": "x" * 24,
    "entry_id": "e" * 32,
    "alert_id": "a" * 32,
    "identity": "ip:192.0.2.1",
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


@dataclass
class Caller:
    """One credential: the headers to send, and the client it comes from."""

    headers: dict[str, str]
    via_proxy: bool = False


@dataclass
class Matrix:
    app: FastAPI
    http: httpx.AsyncClient  # a remote client
    proxy: httpx.AsyncClient  # a trusted TLS-terminating proxy (mutual-TLS subjects)
    callers: dict[str, Caller]

    def client(self, caller: Caller) -> httpx.AsyncClient:
        return self.proxy if caller.via_proxy else self.http


async def make_key(http: httpx.AsyncClient, token: str, scopes: list[str], role: str = "user") -> str:
    created = await http.post(
        "/api/keys", json={"name": "-".join(scopes), "scopes": scopes, "role": role}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


async def cookie_caller(http: httpx.AsyncClient, email: str) -> Caller:
    """A browser session: the cookies and the CSRF token, sent explicitly (the jar is emptied)."""
    response = await http.post(
        "/api/auth/login", json={"email": email, "password": PASSWORD, "mode": "cookie"}
    )
    assert response.status_code == 200, response.text
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
    http.cookies.clear()
    return Caller({"Cookie": cookie, "X-CSRF-Token": response.json()["csrf_token"]})


async def fresh_person(http: httpx.AsyncClient, kind: str) -> Caller:
    """A new session of the matrix user, for routes that end the session they are called with."""
    if kind == "cookie + csrf":
        return await cookie_caller(http, "matrix-user@example.com")
    return Caller(bearer((await login(http, "matrix-user@example.com"))["access_token"]))


@pytest.fixture
async def matrix(make_settings: SettingsFactory) -> AsyncIterator[Matrix]:
    settings = identity_settings(
        make_settings,
        RATE_LIMIT_PER_MINUTE=100_000,
        RATE_LIMIT_MESSAGES="10000/minute",
        API_KEYS=STATIC_APP_KEY,
        ML_API_KEYS=STATIC_ML_KEY,
        TRUSTED_PROXIES="10.0.0.0/8",
        MTLS_CLIENT_HEADER=SUBJECT_HEADER,
        MTLS_SERVICE_IDENTITIES="CN=reports=>reports",
    )
    async with identity_app(settings, client=REMOTE) as (app, http):
        transport = httpx.ASGITransport(app=app, client=PROXY)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as proxy:
            _, user = await user_session(http, "matrix-user@example.com")
            _, admin = await make_admin(app, http, "matrix-admin@example.com")
            token, admin_token = user["access_token"], admin["access_token"]
            callers = {
                "anonymous": Caller({}),
                "user token": Caller(bearer(token)),
                "cookie + csrf": await cookie_caller(http, "matrix-user@example.com"),
                "admin token": Caller(bearer(admin_token)),
                "service key monitoring": Caller(
                    {"X-API-Key": await make_key(http, admin_token, ["monitoring"], role="service")}
                ),
                "service key completions": Caller(
                    {"X-API-Key": await make_key(http, admin_token, ["completions"], role="service")}
                ),
                "admin key": Caller({"X-API-Key": await make_key(http, admin_token, ["admin"])}),
                "static API_KEYS key": Caller({"X-API-Key": STATIC_APP_KEY}),
                "static ML_API_KEYS key": Caller(bearer(STATIC_ML_KEY)),
                "mtls service": Caller({SUBJECT_HEADER: "CN=reports"}, via_proxy=True),
            }
            for scopes in (["chat"], ["voice"], ["journal"], ["completions"], ["profile"]):
                callers[f"key {scopes[0]}"] = Caller({"X-API-Key": await make_key(http, token, scopes)})
            every = ["chat", "voice", "journal", "completions", "profile"]
            callers["key " + " ".join(every)] = Caller(bearer(await make_key(http, token, every)))
            assert set(callers) == set(HOLDS)
            yield Matrix(app, http, proxy, callers)


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = None if method in ("GET", "DELETE") else {}
    response = await http.request(method, concrete(path), json=body, headers=headers)
    http.cookies.clear()  # each credential is sent explicitly; none may ride along in the jar
    return response


async def test_the_inventory_is_exactly_what_is_exposed(matrix: Matrix) -> None:
    assert exposed(matrix.app.openapi()) == set(INVENTORY)
    declared = check_route_access(matrix.app.routes)
    assert {route: declared[route] for route in INVENTORY} == INVENTORY


async def nothing() -> None:
    return None


def test_a_route_without_a_declared_permission_stops_the_app() -> None:
    from fastapi import APIRouter, Depends

    from bastion.api.deps import public, require

    app = FastAPI()
    undeclared = APIRouter()
    undeclared.add_api_route("/open", nothing, methods=["GET"])
    app.include_router(undeclared)
    with pytest.raises(RuntimeError, match="/open"):
        check_route_access(app.routes)
    twice = FastAPI()
    twice.add_api_route(
        "/two",
        nothing,
        methods=["GET"],
        dependencies=[Depends(require(P.CHAT_USE)), Depends(require(P.VOICE_USE))],
    )
    with pytest.raises(RuntimeError, match="/two"):
        check_route_access(twice.routes)
    fine = FastAPI()
    fine.add_api_route("/ok", nothing, methods=["GET"], dependencies=[Depends(public)])
    assert check_route_access(fine.routes) == {("GET", "/ok"): "public"}


async def test_the_console_is_declared_public_and_the_same_for_every_credential(matrix: Matrix) -> None:
    declared = check_route_access(matrix.app.routes)
    console = {route: access for route, access in declared.items() if route[1].split("/")[1] == "admin"}
    assert console == CONSOLE
    shells = set()
    for name, caller in matrix.callers.items():
        http = matrix.client(caller)
        home = await call(http, "GET", "/admin", caller.headers)
        assert (home.status_code, home.headers["location"]) == (303, "/admin/overview"), name
        page = await call(http, "GET", "/admin/audit", caller.headers)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), name
        # Its one script runs with this answer's CSP nonce; apart from the nonce the page is the same
        # for every caller: it holds no data and names no one.
        nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert page.text.count(f'nonce="{nonce}"') == 1, name
        shells.add(page.text.replace(nonce, "NONCE"))
        script = await call(http, "GET", "/admin/static/console.js", caller.headers)
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert (await call(http, "GET", "/admin/nothing-here", caller.headers)).status_code == 404
        assert (await call(http, "GET", "/admin/static/shell.html", caller.headers)).status_code == 404
    assert len(shells) == 1
    assert "matrix-admin@example.com" not in shells.pop()


async def test_every_route_for_every_credential(matrix: Matrix) -> None:
    # Routes that end sessions go last: log-out-everywhere ends the user's other sessions too.
    ordered = sorted(INVENTORY.items(), key=lambda item: item[0] in SESSION_ENDING)
    document = matrix.app.openapi()
    for (method, path), permission in ordered:
        documented = document["paths"][path][method.lower()]["responses"]
        for name, caller in matrix.callers.items():
            holds = permission == PUBLIC or permission in HOLDS[name]
            if holds and (method, path) in SESSION_ENDING:
                # It ends the session it is called with: use a throwaway one of the same kind.
                caller = await fresh_person(matrix.http, name)
            http = matrix.client(caller)
            response = await call(http, method, path, caller.headers)
            label = (name, method, path, response.status_code, response.text[:200])
            assert response.status_code < 500, label
            assert str(response.status_code) in documented, ("undocumented answer", *label)
            for leak in FORBIDDEN_IN_RESPONSES:  # OWASP API3: stored secrets never leave the server
                assert leak not in response.text, (leak, *label)
            assert response.status_code < 400 or "detail" in response.json(), label
            if permission == PUBLIC:
                continue  # anyone may call it; what it answers is its own business (e.g. 401 refresh)
            if holds:
                assert response.status_code not in (401, 403), label
            elif name == "anonymous" and permission != P.HEALTH_READ:
                assert response.status_code == 401, label
                assert response.headers["www-authenticate"].startswith("Bearer"), label
            else:
                # Readiness answers anonymous remote callers 403 too (local ones are let in).
                assert response.status_code == 403, label


async def test_no_key_changes_a_password_or_ends_sessions(matrix: Matrix) -> None:
    """The review's finding: a narrow key acted as its whole account."""
    http = matrix.http
    for name in ("key profile", "key chat voice journal completions profile", "admin key"):
        headers = matrix.callers[name].headers
        changed = await http.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": "Brand-New-Secret-42!"},
            headers=headers,
        )
        assert changed.status_code == 403, (name, changed.text)
        for path in ("/api/auth/logout-all", "/api/auth/logout"):
            assert (await http.post(path, json={}, headers=headers)).status_code == 403, (name, path)
    # The user's own session is untouched by all of that.
    assert (await http.get("/api/auth/me", headers=matrix.callers["user token"].headers)).status_code == 200
    assert (await http.get("/api/auth/me", headers=matrix.callers["key profile"].headers)).status_code == 200
    assert (await http.get("/api/auth/me", headers=matrix.callers["key chat"].headers)).status_code == 403


async def test_methods_outside_the_inventory_are_405(matrix: Matrix) -> None:
    http, who = matrix.http, {"admin": matrix.callers["admin token"].headers}
    paths = {path for _, path in INVENTORY}
    for path in sorted(paths):
        allowed = {method for method, p in INVENTORY if p == path}
        for method in set(METHODS) - allowed - {"HEAD"}:
            response = await call(http, method, path, who["admin"])
            assert response.status_code == 405, (method, path, response.status_code)
            assert response.json()["detail"]["error"] == "method_not_allowed"
        trace = await http.request("TRACE", concrete(path), headers=who["admin"])
        assert trace.status_code == 405, (path, trace.status_code)


async def test_listings_never_carry_stored_secrets(matrix: Matrix) -> None:
    """With data in place (a key, a chat session with messages), every GET stays free of secrets."""
    http = matrix.http
    who = {"user": matrix.callers["user token"].headers, "admin": matrix.callers["admin token"].headers}
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


def test_a_route_that_spends_an_allowance_before_its_permission_stops_the_app() -> None:
    """A limit resolved before the permission would let a refused caller (a narrow key) exhaust
    the allowance of the account behind it, e.g. its owner's password changes."""
    from fastapi import Depends

    from bastion.api.deps import require
    from bastion.api.ratelimit import concurrency_limit, rate_limit
    from bastion.ratelimit.policies import Policy

    for limit in (rate_limit(Policy.PASSWORD_CHANGE), concurrency_limit(Policy.VOICE)):
        app = FastAPI()
        app.add_api_route(
            "/spends-first",
            nothing,
            methods=["POST"],
            dependencies=[Depends(limit), Depends(require(P.CHAT_USE))],
        )
        with pytest.raises(RuntimeError, match="/spends-first"):
            check_route_access(app.routes)
    fine = FastAPI()
    fine.add_api_route(
        "/checks-first",
        nothing,
        methods=["POST"],
        dependencies=[Depends(require(P.CHAT_USE)), Depends(rate_limit(Policy.PASSWORD_CHANGE))],
    )
    assert check_route_access(fine.routes) == {("POST", "/checks-first"): P.CHAT_USE.value}


def test_a_plain_def_dependency_stops_the_app() -> None:
    """FastAPI runs a plain ``def`` dependency (or endpoint) in a worker thread on every request."""
    from fastapi import APIRouter, Depends

    from bastion.api.deps import check_route_access, public

    def threaded() -> None:
        return None

    for dependencies, endpoint in (
        ([Depends(public), Depends(threaded)], nothing),
        ([Depends(public)], threaded),
    ):
        router = APIRouter()
        router.add_api_route("/slow", endpoint, methods=["GET"], dependencies=dependencies)
        with pytest.raises(RuntimeError, match="plain `def` dependencies"):
            check_route_access(router.routes)
