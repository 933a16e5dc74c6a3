# SPDX-License-Identifier: Apache-2.0
"""CSRF tokens, email normalization, permission tables."""

from __future__ import annotations

import pytest

from bastion.auth.csrf import CsrfTokens
from bastion.auth.emails import InvalidEmail, normalize_email
from bastion.auth.permissions import Permission, granted, permissions_for
from bastion.auth.principal import AuthMethod, Principal, Role


def test_csrf_tokens_are_bound_to_the_session() -> None:
    csrf = CsrfTokens(secret=b"c" * 32)
    token = csrf.issue("session-a")
    assert csrf.valid(session_id="session-a", header=token, cookie=token)
    assert not csrf.valid(session_id="session-b", header=token, cookie=token)
    assert not csrf.valid(session_id="session-a", header=token, cookie=csrf.issue("session-a"))
    assert not csrf.valid(session_id="session-a", header=None, cookie=token)
    assert not csrf.valid(session_id="session-a", header="nodot", cookie="nodot")
    assert not CsrfTokens(secret=b"d" * 32).valid(session_id="session-a", header=token, cookie=token)
    with pytest.raises(ValueError):
        CsrfTokens(secret=b"x")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("bob+tag@sub.example.org", "bob+tag@sub.example.org"),
        ("a@xn--80ak6aa92e.com", "a@xn--80ak6aa92e.com"),
    ],
)
def test_emails_normalize(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "p\u0430ypal@example.com",  # Cyrillic a
        "a@ex\u0430mple.com",
        "a\u200b@example.com",  # zero-width space
        "a\uff20example.com",  # fullwidth at
        "a@\u0430\u0440\u0440\u04cf\u0435.com",  # all-Cyrillic look-alike domain
        " a@example.com",
        "a@localhost",
        "no-at-sign",
        "a@" + "b" * 250 + ".com",
        "a\n@example.com",
    ],
)
def test_tricky_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize_email(raw)


def test_permission_tables() -> None:
    user = Principal(subject="u", role=Role.USER, method=AuthMethod.JWT, user_id="u")
    admin = Principal(subject="a", role=Role.ADMIN, method=AuthMethod.JWT, user_id="a")
    service = Principal(subject="s", role=Role.SERVICE, method=AuthMethod.MTLS)
    assert granted(user, Permission.CHAT_USE) and not granted(user, Permission.USERS_MANAGE)
    assert granted(admin, Permission.USERS_MANAGE)
    assert granted(service, Permission.HEALTH_READ) and not granted(service, Permission.CHAT_USE)
    # A key never grants beyond its scopes, even with an admin role.
    admin_key = Principal(
        subject="k", role=Role.ADMIN, method=AuthMethod.API_KEY, scopes=frozenset({"chat:use"})
    )
    assert granted(admin_key, Permission.CHAT_USE) and not granted(admin_key, Permission.USERS_MANAGE)
    scoped = Principal(
        subject="k", role=Role.ADMIN, method=AuthMethod.API_KEY, scopes=frozenset({"users:manage"})
    )
    assert granted(scoped, Permission.USERS_MANAGE)
    assert all(p.value.count(":") == 1 for p in Permission)
    assert permissions_for(Role.ADMIN) == frozenset(Permission)
