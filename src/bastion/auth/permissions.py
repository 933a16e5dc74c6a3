# SPDX-License-Identifier: Apache-2.0
"""Permissions as data: ``resource:action`` names, what each role holds, what each method may grant.

Every route declares exactly one permission (``Depends(require(Permission.X))``) or is public;
whether the caller has it is decided here, never with an ``if user.is_admin`` in a handler.

A credential grants exactly what it names:
- a person's session (access token or cookie) carries the role's permissions;
- a mutual-TLS service identity carries the service role's;
- an API key (managed or static) carries only what its scopes name, and only what its role holds;
- a few permissions belong to a person's session alone and no key or service identity ever holds
  them, whatever its scopes: changing the password, ending sessions, exporting and erasing the
  account (``PERSON_ONLY``).
"""

from __future__ import annotations

from enum import StrEnum

from bastion.auth.principal import AuthMethod, Principal, Role


class Permission(StrEnum):
    PROFILE_READ = "profile:read"  # the account's own details (GET /api/auth/me)
    PASSWORD_CHANGE = "password:change"  # noqa: S105 - a permission name
    SESSIONS_END = "sessions:end"  # log out, log out everywhere
    ACCOUNT_EXPORT = "account:export"  # everything the account holds, as one document
    ACCOUNT_ERASE = "account:erase"  # erase the account and everything it holds
    CHAT_USE = "chat:use"
    JOURNAL_USE = "journal:use"
    KEYS_OWN = "keys:own"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    KEYS_MANAGE = "keys:manage"
    BLOCKLIST_MANAGE = "blocklist:manage"
    AUDIT_READ = "audit:read"
    ALERTS_MANAGE = "alerts:manage"  # list and acknowledge anomaly alerts
    CHAT_SESSIONS_MANAGE = "chat_sessions:manage"  # everyone's active chat sessions: count, list, end
    RATE_LIMITS_MANAGE = "rate_limits:manage"  # one identity's limiter state: inspect, reset
    SECRETS_READ = "secrets:read"
    HEALTH_READ = "health:read"
    METRICS_READ = "metrics:read"
    VOICE_USE = "voice:use"
    COMPLETIONS_USE = "completions:use"  # the OpenAI-compatible /v1 surface


_USER = frozenset(
    {
        Permission.PROFILE_READ,
        Permission.PASSWORD_CHANGE,
        Permission.SESSIONS_END,
        Permission.ACCOUNT_EXPORT,
        Permission.ACCOUNT_ERASE,
        Permission.CHAT_USE,
        Permission.JOURNAL_USE,
        Permission.KEYS_OWN,
        Permission.VOICE_USE,
        Permission.COMPLETIONS_USE,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.USER: _USER,
    Role.ADMIN: frozenset(Permission),
    # A service account that signs in with a password may still see and look after its account.
    Role.SERVICE: frozenset(
        {
            Permission.HEALTH_READ,
            Permission.METRICS_READ,
            Permission.COMPLETIONS_USE,
            Permission.PROFILE_READ,
            Permission.PASSWORD_CHANGE,
            Permission.SESSIONS_END,
        }
    ),
}

ADMIN_PERMISSIONS = frozenset(
    {
        Permission.USERS_READ,
        Permission.USERS_MANAGE,
        Permission.KEYS_MANAGE,
        Permission.BLOCKLIST_MANAGE,
        Permission.AUDIT_READ,
        Permission.ALERTS_MANAGE,
        Permission.CHAT_SESSIONS_MANAGE,
        Permission.RATE_LIMITS_MANAGE,
        Permission.SECRETS_READ,
    }
)

# Held only through a person's own session: a leaked key or a service identity can never change
# the password (and so turn itself into a full session), end the owner's sessions, carry off
# everything the account holds in one request, or erase it.
PERSON_ONLY = frozenset(
    {Permission.PASSWORD_CHANGE, Permission.SESSIONS_END, Permission.ACCOUNT_EXPORT, Permission.ACCOUNT_ERASE}
)
PERSON_METHODS = frozenset({AuthMethod.JWT, AuthMethod.COOKIE})
# An account's own routes need an account: a service identity or a static key has none.
ACCOUNT_PERMISSIONS = PERSON_ONLY | {Permission.PROFILE_READ, Permission.KEYS_OWN}

# Which authentication methods may carry the role's permissions by themselves. Key-based methods
# are limited to their scopes (checked in `granted`).
METHOD_GRANTS_ROLE: dict[AuthMethod, bool] = {
    AuthMethod.JWT: True,
    AuthMethod.COOKIE: True,
    AuthMethod.MTLS: True,
    AuthMethod.API_KEY: False,
    AuthMethod.STATIC_KEY: False,
}


def permissions_for(role: Role) -> frozenset[Permission]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def granted(principal: Principal, permission: Permission) -> bool:
    """Whether ``principal`` holds ``permission`` through its role and authentication method."""
    in_role = permission in permissions_for(principal.role)
    if permission in PERSON_ONLY and principal.method not in PERSON_METHODS:
        return False
    if permission in ACCOUNT_PERMISSIONS and principal.user_id is None:
        return False
    if METHOD_GRANTS_ROLE.get(principal.method, False):
        return in_role
    # Keys: the scope must name the permission, and the key's role must hold it too.
    return in_role and permission.value in principal.scopes


# The scope names API keys are created with, and the permissions each one names. A key's
# principal carries the permission values; `granted` also requires the key's role to hold them,
# so e.g. a `service` key with the `chat` scope still cannot chat.
KEY_SCOPES: dict[str, frozenset[Permission]] = {
    "chat": frozenset({Permission.CHAT_USE}),
    "journal": frozenset({Permission.JOURNAL_USE}),
    "voice": frozenset({Permission.VOICE_USE}),
    "completions": frozenset({Permission.COMPLETIONS_USE}),
    "profile": frozenset({Permission.PROFILE_READ}),
    "monitoring": frozenset({Permission.HEALTH_READ, Permission.METRICS_READ}),
    # An administrator's automation key: the admin API, and key management (its own and others').
    "admin": ADMIN_PERMISSIONS | {Permission.KEYS_OWN},
}
# Scopes only an admin may put on a key (and that stay void once the owner is no longer admin).
ADMIN_ONLY_SCOPES = frozenset({"admin"})
# Scopes that name only service-role permissions: on a user's key they would grant nothing.
SERVICE_ONLY_SCOPES = frozenset({"monitoring"})


def scope_permissions(scopes: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    """The permission values the scope names grant (unknown names grant nothing)."""
    values: set[str] = set()
    for scope in scopes:
        values.update(permission.value for permission in KEY_SCOPES.get(scope, ()))
    return frozenset(values)
