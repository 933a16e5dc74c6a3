# SPDX-License-Identifier: Apache-2.0
"""Accounts and sessions: thin routes over ``IdentityService``.

Two ways to carry tokens. API clients log in with ``{"email", "password"}`` and send
``Authorization: Bearer``. Browsers log in with ``"mode": "cookie"``: the access and refresh tokens
are set as HttpOnly, SameSite=Strict cookies (Secure over https) and never shown to page scripts;
the response carries the CSRF token, also set in a readable cookie, which every state-changing
cookie request echoes in ``X-CSRF-Token``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request, Response, status

from bastion.api.content_types import JsonRoute
from bastion.api.deps import (
    access_claims,
    audit_context,
    identity_of,
    identity_runtime,
    identity_service,
    public,
    require,
)
from bastion.api.ratelimit import enforce_limit, rate_limit
from bastion.api.responses import UTF8JSONResponse as JSONResponse
from bastion.api.schemas.auth import (
    Accepted,
    CookieSessionResponse,
    LoginRequest,
    LogoutRequest,
    PasswordChangeRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserDetail,
    UserOut,
)
from bastion.auth.csrf import HEADER as CSRF_HEADER
from bastion.auth.emails import InvalidEmail, normalize_email
from bastion.auth.permissions import Permission
from bastion.auth.principal import AuthMethod, Principal
from bastion.auth.runtime import IdentityRuntime
from bastion.auth.service import Context, IdentityService, TokenPair
from bastion.crypto.content_keys import ContentKeys
from bastion.errors import CsrfRejected, RateLimited, Unauthorized
from bastion.observability.metrics import metrics_of
from bastion.ratelimit.policies import Policy, email_identity
from bastion.web.authentication import ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE, request_cookies

router = APIRouter(prefix="/api/auth", tags=["auth"], route_class=JsonRoute)
jwks_router = APIRouter(tags=["auth"])

Service = Annotated[IdentityService, Depends(identity_service)]
Runtime = Annotated[IdentityRuntime, Depends(identity_runtime)]
Ctx = Annotated[Context, Depends(audit_context)]
Reader = Annotated[Principal, Depends(require(Permission.PROFILE_READ))]
SessionOwner = Annotated[Principal, Depends(require(Permission.SESSIONS_END))]
PASSWORD_CHANGE = require(Permission.PASSWORD_CHANGE)
PasswordOwner = Annotated[Principal, Depends(PASSWORD_CHANGE)]
REFRESH_COOKIE_PATH = "/api/auth"


def _secure(request: Request, runtime: IdentityRuntime) -> bool:
    return request.url.scheme == "https" or runtime.settings.force_https


def _set_cookies(response: Response, request: Request, runtime: IdentityRuntime, pair: TokenPair) -> str:
    secure = _secure(request, runtime)
    csrf = runtime.csrf.issue(pair.session_id)
    refresh_age = runtime.settings.refresh_token_days * 86400
    response.set_cookie(
        ACCESS_COOKIE,
        pair.access_token,
        max_age=pair.expires_in,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        pair.refresh_token,
        max_age=refresh_age,
        path=REFRESH_COOKIE_PATH,
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    # Readable by the page on purpose: it echoes it in X-CSRF-Token (double submit).
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=refresh_age, path="/", secure=secure, httponly=False, samesite="strict"
    )
    return csrf


def clear_cookies(response: Response, request: Request, runtime: IdentityRuntime) -> None:
    secure = _secure(request, runtime)
    response.delete_cookie(ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, httponly=False, samesite="strict")


def _session_response(
    pair: TokenPair, *, cookie: bool, request: Request, runtime: IdentityRuntime
) -> TokenResponse | JSONResponse:
    if not cookie:
        return TokenResponse(
            access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
        )
    response = JSONResponse({})
    csrf = _set_cookies(response, request, runtime, pair)
    body = CookieSessionResponse(expires_in=pair.expires_in, csrf_token=csrf)
    response.body = response.render(body.model_dump())
    response.headers["content-length"] = str(len(response.body))
    return response


# The most frequent authenticated read: first in the table (matched before every other route here),
# and its service taken from the request rather than through a dependency (FastAPI solves each
# dependency on every request, about a tenth of this route's cost).
@router.get("/me", response_model=UserDetail)
async def me(principal: Reader, request: Request) -> UserDetail:
    service = identity_of(request).service()
    user = await service.me(principal.user_id or principal.subject)
    return UserDetail.of(user, service)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    dependencies=[Depends(public), Depends(rate_limit(Policy.REGISTER))],
)
async def register(body: RegisterRequest, service: Service, context: Ctx) -> UserOut:
    """Create an account. A taken email gets the same answer (no account enumeration)."""
    registered = await service.register(body.email, body.password, context, invitation=body.invitation)
    return UserOut(id=registered.id, email=registered.email, role=registered.role)


@router.post(
    "/login",
    response_model=TokenResponse | CookieSessionResponse,
    dependencies=[Depends(public), Depends(rate_limit(Policy.LOGIN))],
    responses={401: {"description": "Login failed (the same answer for every reason)"}},
)
async def login(
    body: LoginRequest, request: Request, service: Service, runtime: Runtime, context: Ctx
) -> TokenResponse | JSONResponse:
    """Tokens for a correct password; throttled per account and client (see docs/identity.md)."""
    try:
        pair = await service.login(body.email, body.password, context)
    except Unauthorized:
        metrics_of(request.app).auth_failure("bad_credentials")
        raise
    except RateLimited:
        metrics_of(request.app).rate_limited("login_lockout")
        raise
    return _session_response(pair, cookie=body.mode == "cookie", request=request, runtime=runtime)


@router.post(
    "/refresh",
    response_model=TokenResponse | CookieSessionResponse,
    dependencies=[Depends(public), Depends(rate_limit(Policy.REFRESH))],
    responses={401: {"description": "Invalid, expired or reused refresh token"}},
)
async def refresh(
    request: Request,
    service: Service,
    runtime: Runtime,
    context: Ctx,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> TokenResponse | JSONResponse:
    """Rotate a refresh token (from the body, or from the cookie with a CSRF token)."""
    if body is not None and body.refresh_token:
        pair = await service.refresh(body.refresh_token, context)
        return _session_response(pair, cookie=False, request=request, runtime=runtime)
    cookies = request_cookies(request.scope)
    token = cookies.get(REFRESH_COOKIE)
    if not token:
        raise Unauthorized()
    session_id = await service.session_of_refresh_token(token)
    if session_id is None:
        raise Unauthorized("Invalid or expired token")
    if not runtime.csrf.valid(
        session_id=session_id, header=request.headers.get(CSRF_HEADER), cookie=cookies.get(CSRF_COOKIE)
    ):
        raise CsrfRejected()
    pair = await service.refresh(token, context)
    return _session_response(pair, cookie=True, request=request, runtime=runtime)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    request: Request,
    principal: SessionOwner,
    service: Service,
    runtime: Runtime,
    context: Ctx,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    refresh_token = body.refresh_token if body is not None else None
    if refresh_token is None and principal.method is AuthMethod.COOKIE:
        refresh_token = request_cookies(request.scope).get(REFRESH_COOKIE)
    await service.logout(access_claims(request), refresh_token, context)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_cookies(response, request, runtime)
    return response


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(
    request: Request, principal: SessionOwner, service: Service, runtime: Runtime, context: Ctx
) -> Response:
    await service.logout_all(principal.user_id or principal.subject, context)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_cookies(response, request, runtime)
    return response


@router.post(
    "/password",
    response_model=TokenResponse | CookieSessionResponse,
    # The permission first: a key (which never holds it) spends none of the owner's allowance.
    dependencies=[Depends(PASSWORD_CHANGE), Depends(rate_limit(Policy.PASSWORD_CHANGE))],
)
async def change_password(
    body: PasswordChangeRequest,
    request: Request,
    principal: PasswordOwner,
    service: Service,
    runtime: Runtime,
    context: Ctx,
) -> TokenResponse | JSONResponse:
    """Change the password: every session ends, and a new one is returned for this client.

    The current password is checked like a login's (same throttle, same automatic blocks).
    """
    pair = await service.change_password(
        principal.user_id or principal.subject, body.current_password, body.new_password, context
    )
    return _session_response(
        pair, cookie=principal.method is AuthMethod.COOKIE, request=request, runtime=runtime
    )


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=[Depends(public), Depends(rate_limit(Policy.PASSWORD_RESET))],
)
async def password_reset(
    body: PasswordResetRequest, request: Request, response: Response, service: Service, context: Ctx
) -> Accepted:
    """Always 202: whether the address has an account is never revealed."""
    try:
        email = normalize_email(body.email)
    except InvalidEmail:
        return Accepted()
    # Per address as well as per client: one inbox cannot be flooded from many addresses.
    await enforce_limit(request, response, Policy.PASSWORD_RESET_EMAIL, email_identity(email))
    await service.request_password_reset(email, context)
    return Accepted()


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(public), Depends(rate_limit(Policy.PASSWORD_RESET))],
    responses={401: {"description": "Invalid or expired reset token"}},
)
async def password_reset_confirm(body: PasswordResetConfirm, service: Service, context: Ctx) -> Response:
    await service.confirm_password_reset(body.token, body.new_password, context)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@jwks_router.get("/.well-known/jwks.json", dependencies=[Depends(public)])
async def jwks(runtime: Runtime, request: Request) -> JSONResponse:
    """Public verification keys: the access tokens' (none for HS256: a shared secret is never
    published), then the content-signing keys of model replies (key ids ``content-...``)."""
    now = runtime.clock()
    content: ContentKeys = request.app.state.content_keys
    keys = runtime.keyring.jwks(now)["keys"] + content.jwks(now)
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "public, max-age=300"})
