# SPDX-License-Identifier: Apache-2.0
"""Dependencies that routes compose."""

from __future__ import annotations

from fastapi import Request

from bastion.auth.principal import Principal, Role
from bastion.errors import Forbidden, Unauthorized
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


def require_admin(request: Request) -> Principal:
    """Admins only: 401 when nobody is authenticated, 403 for anyone else."""
    principal = current_principal(request)
    if principal is None:
        raise Unauthorized()
    if principal.role is not Role.ADMIN:
        raise Forbidden()
    return principal
