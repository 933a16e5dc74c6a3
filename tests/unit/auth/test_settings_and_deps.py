# SPDX-License-Identifier: Apache-2.0
"""Identity settings refused in production; the authorization dependencies on their own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.requests import Request

from bastion.api.deps import require
from bastion.auth.permissions import Permission
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.errors import CsrfRejected, Forbidden, Unauthorized
from bastion.settings import ConfigurationError, Settings
from tests.unit.test_settings import strong_production_env


@pytest.mark.parametrize(
    ("name", "value"),
    [("ARGON2_MEMORY_KIB", "1024"), ("ARGON2_TIME_COST", "1"), ("BCRYPT_ROUNDS", "10")],
)
def test_production_refuses_cheap_hashing(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    strong_production_env(monkeypatch)
    Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match="below the safe minimum"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_production_refuses_clear_text_smtp(monkeypatch: pytest.MonkeyPatch) -> None:
    strong_production_env(monkeypatch)
    monkeypatch.setenv("SMTP_HOST", "mail.example.org")
    monkeypatch.setenv("SMTP_SECURITY", "none")
    with pytest.raises(ConfigurationError, match="clear text"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def request_with(state: dict[str, Any]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "state": state})


def principal(role: Role, method: AuthMethod = AuthMethod.JWT, **extra: Any) -> Principal:
    return Principal(subject="x", role=role, method=method, **extra)


def outcome(dependency: Callable[[Request], Awaitable[Principal]], state: dict[str, Any]) -> str:
    try:
        asyncio.run(dependency(request_with(state)))
    except Unauthorized:
        return "401"
    except CsrfRejected:
        return "403-csrf"
    except Forbidden:
        return "403"
    return "ok"


def test_authorization_dependencies() -> None:
    user = {"principal": principal(Role.USER, user_id="u", scopes=frozenset({"chat:use"}))}
    admin = {"principal": principal(Role.ADMIN, user_id="a")}
    service = {"principal": principal(Role.SERVICE, AuthMethod.MTLS)}
    anonymous: dict[str, Any] = {}
    csrf_failed = {"auth_error": "csrf"}
    profile = require(Permission.PROFILE_READ)
    assert [outcome(profile, s) for s in (user, admin, service, anonymous)] == ["ok", "ok", "403", "401"]
    assert outcome(profile, csrf_failed) == "403-csrf"
    manage = require(Permission.USERS_MANAGE)
    assert [outcome(manage, s) for s in (user, admin, service, anonymous)] == ["403", "ok", "403", "401"]


@pytest.mark.parametrize("method", [AuthMethod.API_KEY, AuthMethod.STATIC_KEY, AuthMethod.MTLS])
@pytest.mark.parametrize("permission", [Permission.PASSWORD_CHANGE, Permission.SESSIONS_END])
def test_no_key_or_service_identity_ever_holds_a_person_only_permission(
    method: AuthMethod, permission: Permission
) -> None:
    every_scope = frozenset(p.value for p in Permission)
    for role in Role:
        holder = principal(role, method, user_id="u", scopes=every_scope)
        assert outcome(require(permission), {"principal": holder}) == "403"
    person = principal(Role.USER, AuthMethod.COOKIE, user_id="u")
    assert outcome(require(permission), {"principal": person}) == "ok"
    # An account route needs an account: a principal without one (a service identity) never holds it.
    assert outcome(require(permission), {"principal": principal(Role.SERVICE, AuthMethod.JWT)}) == "403"
