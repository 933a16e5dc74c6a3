# SPDX-License-Identifier: Apache-2.0
"""Permissions as data: ``resource:action`` names, what each role holds, what each method may grant.

A route declares ``Depends(require(Permission.X))``; whether the caller has it is decided here,
never with an ``if user.is_admin`` in a handler. An API key grants only what its scopes name and
never an admin permission unless a scope names it explicitly.
"""

from __future__ import annotations

from enum import StrEnum

from bastion.auth.principal import AuthMethod, Principal, Role


class Permission(StrEnum):
    PROFILE_READ = "profile:read"
    PROFILE_WRITE = "profile:write"
    CHAT_USE = "chat:use"
    JOURNAL_USE = "journal:use"
    KEYS_OWN = "keys:own"
    USERS_READ = "users:read"
    USERS_MANAGE = "users:manage"
    KEYS_MANAGE = "keys:manage"
    AUDIT_READ = "audit:read"
    HEALTH_READ = "health:read"
    METRICS_READ = "metrics:read"
    VOICE_USE = "voice:use"
    COMPLETIONS_USE = "completions:use"  # the OpenAI-compatible /v1 surface


_USER = frozenset(
    {
        Permission.PROFILE_READ,
        Permission.PROFILE_WRITE,
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
    Role.SERVICE: frozenset({Permission.HEALTH_READ, Permission.METRICS_READ, Permission.COMPLETIONS_USE}),
}

ADMIN_PERMISSIONS = frozenset(
    {Permission.USERS_READ, Permission.USERS_MANAGE, Permission.KEYS_MANAGE, Permission.AUDIT_READ}
)

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
    "monitoring": frozenset({Permission.HEALTH_READ, Permission.METRICS_READ}),
    "admin": ADMIN_PERMISSIONS,
}
# Scopes only an admin may put on a key (and that stay void once the owner is no longer admin).
ADMIN_ONLY_SCOPES = frozenset({"admin"})


def scope_permissions(scopes: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    """The permission values the scope names grant (unknown names grant nothing)."""
    values: set[str] = set()
    for scope in scopes:
        values.update(permission.value for permission in KEY_SCOPES.get(scope, ()))
    return frozenset(values)
