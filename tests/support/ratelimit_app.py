# SPDX-License-Identifier: Apache-2.0
"""A test-only Bastion app: the real app plus routes that exercise each limit, and a test principal.

Served by uvicorn in the multi-instance tests: ``uvicorn tests.support.ratelimit_app:create_app
--factory`` with settings from the environment. ``X-Test-Principal: admin|user:<id>|key:<id>``
stands in for authentication (a pure-ASGI layer outside the app, so it runs first).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.api.deps import request_client_ip
from bastion.api.ratelimit import (
    concurrency_limit,
    enforce_limit,
    get_limiter,
    rate_limit,
    refuse_blocked_principal,
    request_identity,
)
from bastion.app import create_app as create_bastion_app
from bastion.auth.principal import AuthMethod, Principal, Role
from bastion.errors import Unauthorized
from bastion.ratelimit.leases import ConcurrencyLimiter, Lease
from bastion.ratelimit.policies import Policy, email_identity
from bastion.settings import Settings, load_settings

router = APIRouter(prefix="/test")


@router.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@router.get("/login-like", dependencies=[Depends(rate_limit(Policy.LOGIN))])
async def login_like() -> dict[str, bool]:
    return {"ok": True}


@router.get("/messages", dependencies=[Depends(rate_limit(Policy.MESSAGES))])
async def messages() -> dict[str, bool]:
    return {"ok": True}


class ResetRequest(BaseModel):
    email: str = Field(max_length=254)


@router.post("/password-reset", status_code=202, dependencies=[Depends(rate_limit(Policy.PASSWORD_RESET))])
async def password_reset(body: ResetRequest, request: Request, response: Response) -> dict[str, bool]:
    """Limited per address (dependency) and per email (in the handler, once the body is parsed)."""
    await enforce_limit(request, response, Policy.PASSWORD_RESET_EMAIL, email_identity(body.email))
    return {"accepted": True}


@router.post("/failed-login")
async def failed_login(request: Request) -> None:
    """What the identity code does on a wrong password: count it, then answer 401."""
    limiter = get_limiter(request)
    await limiter.record_auth_failure(limiter.ip_identity(request_client_ip(request)))
    raise Unauthorized()


@router.post("/bad-key/{key_id}")
async def bad_key(request: Request, key_id: str) -> None:
    """What the identity code does when a known key fails (wrong secret, wrong scope)."""
    await get_limiter(request).record_failed_authentication(ip=request_client_ip(request), api_key_id=key_id)
    raise Unauthorized()


def authenticate(request: Request) -> None:
    """Authentication as a dependency (after the middleware ran): X-Test-Auth names the caller."""
    spec = request.headers.get("x-test-auth")
    if spec:
        request.scope.setdefault("state", {})["principal"] = principal(spec)


@router.get("/keyed", dependencies=[Depends(authenticate), Depends(refuse_blocked_principal)])
async def keyed() -> dict[str, bool]:
    return {"ok": True}


@router.post("/voice")
async def voice(request: Request, lease: Lease = Depends(concurrency_limit(Policy.VOICE))) -> dict[str, Any]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"bytes": size}


@router.get("/voice/in-flight")
async def voice_in_flight(request: Request) -> dict[str, int]:
    concurrency: ConcurrencyLimiter = request.app.state.concurrency[Policy.VOICE]
    scope = get_limiter(request).rule(Policy.VOICE).scope
    return {"in_flight": await concurrency.in_flight(request_identity(request, scope))}


class TestPrincipal:
    """Sets ``scope["state"]["principal"]`` from the X-Test-Principal header (tests only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # A per-request copy, as uvicorn makes (the in-process lifespan harness shares one dict).
            scope["state"] = dict(scope.get("state") or {})
            for name, value in scope.get("headers", ()):
                if name == b"x-test-principal":
                    scope["state"]["principal"] = principal(value.decode())
        await self.app(scope, receive, send)


def principal(spec: str) -> Principal:
    if spec == "admin":
        return Principal(subject="admin-1", role=Role.ADMIN, method=AuthMethod.JWT, user_id="admin-1")
    kind, _, value = spec.partition(":")
    if kind == "key":
        return Principal(subject=value, role=Role.USER, method=AuthMethod.API_KEY, api_key_id=value)
    return Principal(subject=value, role=Role.USER, method=AuthMethod.JWT, user_id=value)


def build(settings: Settings) -> tuple[FastAPI, ASGIApp]:
    app = create_bastion_app(settings)
    app.include_router(router)
    return app, TestPrincipal(app)


def create_app() -> ASGIApp:
    """The uvicorn factory: settings from the environment."""
    return build(load_settings())[1]
