# SPDX-License-Identifier: Apache-2.0
"""Authentication: who is calling, stored at ``scope["state"]["principal"]`` for every later layer.

Reads an access token from ``Authorization: Bearer`` (API clients) or from the HttpOnly access
cookie (browsers). Never from the query string. A cookie-authenticated request with an unsafe
method must carry a valid CSRF token, or it is not authenticated at all. This layer never answers
by itself: it records the principal, or the reason a presented credential was refused
(``scope["state"]["auth_error"]``, audited), and the route dependencies decide (401/403). The one
exception is an outage: when whether the token was revoked cannot be known and the fail mode is
closed, the request is answered 503 with Retry-After here (the token is not accepted).
Bearer values starting with ``bst_`` are API keys and left to the API-key policy.
"""

from __future__ import annotations

import contextlib
from http.cookies import SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.audit.events import AuditEvent, Result
from bastion.auth.csrf import HEADER as CSRF_HEADER
from bastion.auth.csrf import SAFE_METHODS
from bastion.auth.principal import AuthMethod
from bastion.auth.tokens import MAX_TOKEN_LENGTH, TokenInvalid
from bastion.errors import ServiceUnavailable
from bastion.observability.logging import get_logger
from bastion.observability.metrics import metrics_of
from bastion.web.errors import send_domain_error
from bastion.web.proxies import client_ip, parse_networks

ACCESS_COOKIE = "bastion_access"
REFRESH_COOKIE = "bastion_refresh"
CSRF_COOKIE = "bastion_csrf"
API_KEY_PREFIX = "bst_"


def request_cookies(scope: Scope) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            # A malformed cookie header is ignored, like a missing one.
            with contextlib.suppress(Exception):
                jar.load(value.decode("latin-1"))
                cookies.update({key: morsel.value for key, morsel in jar.items()})
    return cookies


def header_values(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]


class Authentication:
    def __init__(
        self, app: ASGIApp, *, trusted_proxies: list[str] | None = None, license_url: str | None = None
    ) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies or [])
        self.license_url = license_url
        self.log = get_logger("bastion.auth")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self._authenticate(scope)
            except ServiceUnavailable as exc:
                await send_domain_error(scope, send, exc, license_url=self.license_url)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> None:
        app = scope.get("app")
        identity = getattr(getattr(app, "state", None), "identity", None)
        if identity is None:
            return
        # A per-request copy: servers that hand every request the same lifespan-state dict (as
        # some test harnesses do) must never let one request's principal show in another.
        state: dict[str, Any] = dict(scope.get("state") or {})
        scope["state"] = state
        if state.get("principal") is not None:
            # Policies compose and the first identity wins: an outer policy (mutual TLS, an
            # embedding app's own authentication) already said who this is.
            return
        authorization = header_values(scope, b"authorization")
        token: str | None = None
        method = AuthMethod.JWT
        if len(authorization) > 1:
            await self._refuse(scope, identity, "duplicate_authorization")
            return
        if authorization:
            scheme, _, value = authorization[0].strip().partition(" ")
            if scheme.lower() != "bearer":
                return  # another scheme: for another policy (or none), never guessed at here
            value = value.strip()
            if value.startswith(API_KEY_PREFIX):
                return
            token = value
        else:
            cookies = request_cookies(scope)
            token = cookies.get(ACCESS_COOKIE)
            method = AuthMethod.COOKIE
            if token is None:
                return
        if len(token) > MAX_TOKEN_LENGTH:
            await self._refuse(scope, identity, "malformed")
            return
        try:
            principal, claims = await identity.service().authenticate(token, method)
        except TokenInvalid as exc:
            await self._refuse(scope, identity, exc.reason)
            return
        if method is AuthMethod.COOKIE and scope.get("method", "GET") not in SAFE_METHODS:
            cookies = request_cookies(scope)
            headers = header_values(scope, CSRF_HEADER.encode())
            if len(headers) != 1 or not identity.csrf.valid(
                session_id=claims.session_id, header=headers[0], cookie=cookies.get(CSRF_COOKIE)
            ):
                await self._refuse(scope, identity, "csrf", event=AuditEvent.CSRF_REJECTED)
                return
        state["principal"] = principal
        state["access_claims"] = claims

    async def _refuse(
        self, scope: Scope, identity: Any, reason: str, *, event: AuditEvent = AuditEvent.AUTH_FAILURE
    ) -> None:
        scope["state"]["auth_error"] = reason
        metrics_of(scope.get("app")).auth_failure(reason)
        state = scope["state"]
        try:
            await identity.audit.record(
                event,
                result=Result.FAILURE,
                ip=client_ip(scope, self.trusted),
                request_id=state.get("request_id"),
                details={"method": "token", "reason": reason, "path": scope.get("path", "")[:200]},
            )
        except Exception as exc:  # the refusal stands even if the audit store is down
            self.log.warning("audit_failed", audit_event=str(event), error=type(exc).__name__)
