# SPDX-License-Identifier: Apache-2.0
"""Dependencies that routes compose."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from bastion.auth.permissions import Permission, granted
from bastion.auth.principal import Principal
from bastion.auth.runtime import IdentityRuntime
from bastion.auth.service import Context, IdentityService
from bastion.auth.tokens import AccessClaims
from bastion.chat.screening import Origin
from bastion.errors import CsrfRejected, Forbidden, Unauthorized
from bastion.settings import Settings
from bastion.web.proxies import client_ip, is_loopback, parse_networks


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_settings(request: Request) -> Settings:
    """The dependency form of ``settings_of``.

    Every dependency is ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a
    thread hop on every request for what is an attribute read (``check_route_access`` refuses them).
    """
    return settings_of(request)


def require_local(request: Request) -> None:
    """Only callers on this machine (the resolved client, not a forwarded claim from an untrusted peer)."""
    trusted = parse_networks(settings_of(request).trusted_proxies)
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


@dataclass(frozen=True, slots=True)
class Require:
    """The one permission a route declares: ``Depends(require(Permission.X))``.

    401 (with WWW-Authenticate) when nobody is authenticated, 403 when the caller does not hold
    the permission (decided by the tables in ``bastion.auth.permissions``). With ``or_local``,
    an anonymous caller on this machine is let in too (readiness probes of a local supervisor).
    """

    permission: Permission
    or_local: bool = False

    async def __call__(self, request: Request) -> Principal | None:
        principal = current_principal(request)
        if principal is None and self.or_local:
            require_local(request)
            return None
        principal = require_principal(request)
        if not granted(principal, self.permission):
            raise Forbidden()
        return principal


@dataclass(frozen=True, slots=True)
class Public:
    """The declaration of a route anyone may call (its own limits and checks still apply)."""

    async def __call__(self) -> None:
        return None


public = Public()


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """``Depends(require(Permission.USERS_MANAGE))``: the caller, who holds the permission."""
    return cast(Callable[[Request], Awaitable[Principal]], Require(permission))


def route_access(dependant: Dependant) -> set[Require | Public]:
    """Every access declaration a route carries, through all of its dependencies."""
    found: set[Require | Public] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        if isinstance(current.call, Require | Public):
            found.add(current.call)
        pending.extend(current.dependencies)
    return found


def _spends_before_access(dependant: Dependant) -> bool:
    """Whether a rate or concurrency limit runs before the access declaration.

    FastAPI resolves a route's dependencies in order: the router's and the decorator's, then the
    parameters'. A limit resolved first would let a caller the route refuses (403) spend the
    allowance of the account behind it: a narrow key could exhaust its owner's password changes.
    """
    for dependency in dependant.dependencies:
        if route_access(dependency):
            return False
        if getattr(dependency.call, "spends_allowance", False):
            return True
    return False


def _runs_in_thread(call: Callable[..., object] | None) -> bool:
    """Whether FastAPI would run this dependency in a worker thread (a plain ``def``, a class)."""
    if call is None:
        return False
    target = inspect.unwrap(call)
    if inspect.isclass(target):
        return True
    if not inspect.isroutine(target):
        target = getattr(target, "__call__", None)  # noqa: B004 - a callable instance's method
    return not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target))


def threaded_dependencies(dependant: Dependant) -> list[str]:
    """The names of a route's dependencies (its endpoint included) that run in a worker thread."""
    found: list[str] = []
    pending = [dependant]
    while pending:
        current = pending.pop()
        if _runs_in_thread(current.call):
            call = current.call
            found.append(getattr(call, "__qualname__", type(call).__qualname__))
        pending.extend(current.dependencies)
    return found


def check_route_access(routes: Sequence[BaseRoute], *, strict: bool = True) -> dict[tuple[str, str], str]:
    """Each API route's declared permission (or ``public``); refuses a route with none or several.

    ``create_app`` calls this, so a route added without a declaration stops the service from
    starting instead of shipping open. Routes are read as served: with their routers' prefixes
    and router-level dependencies. With ``strict=False`` undeclared routes are left out instead.
    """
    table: dict[tuple[str, str], str] = {}
    for route in iter_route_contexts(routes):
        dependant = getattr(route, "dependant", None)
        if not isinstance(route.original_route, APIRoute) or not isinstance(dependant, Dependant):
            continue
        declared = route_access(dependant)
        if len(declared) != 1:
            if not strict:  # documenting routes an adopting app added after create_app
                continue
            raise RuntimeError(f"route {route.path} must declare exactly one permission or public()")
        if strict and (threaded := threaded_dependencies(dependant)):
            raise RuntimeError(
                f"route {route.path} has plain `def` dependencies ({', '.join(sorted(set(threaded)))}): "
                "FastAPI runs each in a worker thread on every request; make them `async def`"
            )
        if strict and _spends_before_access(dependant):
            raise RuntimeError(
                f"route {route.path} spends a rate or concurrency allowance before checking its "
                "permission: list its require(...) first, so a caller without it spends nothing"
            )
        (access,) = declared
        value = "public" if isinstance(access, Public) else access.permission.value
        for method in route.methods or ():
            table[(method, str(route.path))] = value
    return table


# -- identity ------------------------------------------------------------------------------------


def identity_of(request: Request) -> IdentityRuntime:
    runtime: IdentityRuntime = request.app.state.identity
    return runtime


async def identity_runtime(request: Request) -> IdentityRuntime:
    return identity_of(request)


async def identity_service(request: Request) -> IdentityService:
    """The app's identity service (built once, ``IdentityRuntime.service``)."""
    return identity_of(request).service()


async def audit_context(request: Request) -> Context:
    return context_of(request)


def request_client_ip(request: Request) -> str | None:
    """The client address resolved by the proxy layer, or resolved here the same way.

    The trusted networks are parsed only when no layer resolved the address (each network costs
    a few microseconds to parse, on every request that asks).
    """
    state = request.scope.get("state") or {}
    ip = state.get("client_ip")
    if isinstance(ip, str):
        return ip
    return client_ip(request.scope, parse_networks(settings_of(request).trusted_proxies))


def context_of(request: Request) -> Context:
    """Who is asking, for the audit trail: the resolved client address and the request id."""
    request_id = (request.scope.get("state") or {}).get("request_id")
    return Context(
        ip=request_client_ip(request), request_id=request_id if isinstance(request_id, str) else None
    )


def guard_origin(request: Request) -> Origin:
    """Who sent the texts the content guard screens in this request (for its log and audit)."""
    context = context_of(request)
    principal = current_principal(request)
    return Origin(
        request_id=context.request_id,
        ip=context.ip,
        user_id=principal.user_id if principal else None,
        api_key_id=principal.api_key_id if principal else None,
    )


def access_claims(request: Request) -> AccessClaims | None:
    claims = (request.scope.get("state") or {}).get("access_claims")
    return claims if isinstance(claims, AccessClaims) else None
