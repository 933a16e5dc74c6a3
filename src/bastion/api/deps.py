# SPDX-License-Identifier: Apache-2.0
"""Dependencies that routes compose."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from bastion.auth.permissions import Permission, granted
from bastion.auth.principal import Principal, Role
from bastion.auth.runtime import IdentityRuntime
from bastion.auth.service import Context, IdentityService
from bastion.auth.tokens import AccessClaims
from bastion.errors import CsrfRejected, Forbidden, Unauthorized
from bastion.settings import Settings
from bastion.web.proxies import client_ip, is_loopback, parse_networks


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def require_local(request: Request) -> None:
    """Only callers on this machine (the resolved client, not a forwarded claim from an untrusted peer)."""
    trusted = parse_networks(get_settings(request).trusted_proxies)
    if not is_loopback(client_ip(request.scope, trusted)):
        raise Forbidden()


def current_principal(request: Request) -> Principal | None:
    """The caller that authentication identified, if any."""
    state = request.scope.get("state") or {}
    principal = state.get("principal")
    return principal if isinstance(principal, Principal) else None


def require_principal(request: Request) -> Principal:
    """Anyone authenticated: 401 (with WWW-Authenticate) otherwise, 403 for a failed CSRF check."""
    principal = current_principal(request)
    if principal is None:
        state = request.scope.get("state") or {}
        if state.get("auth_error") == "csrf":
            raise CsrfRejected()
        raise Unauthorized()
    return principal


def require_admin(request: Request) -> Principal:
    """Admins only: 401 when nobody is authenticated, 403 for anyone else."""
    principal = require_principal(request)
    if principal.role is not Role.ADMIN:
        raise Forbidden()
    return principal


def require_user(request: Request) -> Principal:
    """A person's account (any role), authenticated by token or cookie."""
    principal = require_principal(request)
    if principal.user_id is None:
        raise Forbidden()
    return principal


def require_role(*roles: Role) -> Callable[[Request], Principal]:
    """``Depends(require_role(Role.ADMIN, Role.SERVICE))``: one of these roles."""
    allowed = frozenset(roles)

    def dependency(request: Request) -> Principal:
        principal = require_principal(request)
        if principal.role not in allowed:
            raise Forbidden()
        return principal

    return dependency


def require_scopes(*scopes: str) -> Callable[[Request], Principal]:
    """``Depends(require_scopes("chat:use"))``: every one of these scopes."""
    needed = frozenset(scopes)

    def dependency(request: Request) -> Principal:
        principal = require_principal(request)
        if not needed <= principal.scopes:
            raise Forbidden()
        return principal

    return dependency


def require(permission: Permission) -> Callable[[Request], Principal]:
    """``Depends(require(Permission.USERS_MANAGE))``: decided by the permission tables."""

    def dependency(request: Request) -> Principal:
        principal = require_principal(request)
        if not granted(principal, permission):
            raise Forbidden()
        return principal

    return dependency


def require_local_or_operator(request: Request) -> None:
    """Callers on this machine, or an authenticated admin or service principal."""
    principal = current_principal(request)
    if principal is not None and principal.role in (Role.ADMIN, Role.SERVICE):
        return
    require_local(request)


# -- identity ------------------------------------------------------------------------------------


def identity_runtime(request: Request) -> IdentityRuntime:
    runtime: IdentityRuntime = request.app.state.identity
    return runtime


def identity_service(request: Request) -> IdentityService:
    """A service built for this request from the app's shared collaborators."""
    return identity_runtime(request).service()


def audit_context(request: Request) -> Context:
    trusted = parse_networks(get_settings(request).trusted_proxies)
    state = request.scope.get("state") or {}
    request_id = state.get("request_id")
    return Context(
        ip=client_ip(request.scope, trusted), request_id=request_id if isinstance(request_id, str) else None
    )


def access_claims(request: Request) -> AccessClaims | None:
    claims = (request.scope.get("state") or {}).get("access_claims")
    return claims if isinstance(claims, AccessClaims) else None
