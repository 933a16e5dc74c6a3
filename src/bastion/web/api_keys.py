# SPDX-License-Identifier: Apache-2.0
"""API-key authentication, and REQUIRE_API_KEY, as one pure-ASGI layer.

Its own layer, right outside the token layer (``bastion.web.authentication``), rather than a
branch inside it: the key policy answers by itself (401 for a bad key, on any route: a presented
key is never silently ignored) while the token layer never does, and it can then be adopted alone
by an app that has no accounts at all (static keys).

The key is read from API_KEY_HEADER (``X-API-Key``) or from ``Authorization: Bearer bst_...`` (or a
bearer value that is a configured static key);
exactly one of each header, at most one key. Every failure (empty, too long, wrong prefix,
non-ASCII, unknown id, wrong secret, revoked, expired, past its rotation grace) answers the same
401 with ``WWW-Authenticate: Bearer``, is audited with the reason and the key id when known, and
counts as a failed authentication of the client address (repeated failures block it).

Who the caller is: the key's principal, unless the request also carries a user's access token
(a non-``bst_`` bearer token, or the access cookie when there is no Authorization header). Then
the key only vouches for the client application and the token's user is the caller (so a mobile
app's shared key never merges its users into one identity). A principal an outer policy set
(mutual TLS) is kept: first identity wins.

REQUIRE_API_KEY: requests to the privileged routes (chat sessions and voice, journal, admin,
``/v1``) need a valid key, or a service identity from mutual TLS; a token alone is not enough
there. With the setting off, requests without a key are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.auth.api_key_service import ApiKeys, KeyRejected
from bastion.auth.api_keys import PREFIX
from bastion.auth.principal import AuthMethod, Principal
from bastion.errors import BastionError, ServiceUnavailable, Unauthorized
from bastion.observability.logging import get_logger
from bastion.observability.metrics import metrics_of
from bastion.web.authentication import ACCESS_COOKIE, request_cookies
from bastion.web.errors import send_domain_error
from bastion.web.proxies import client_ip, parse_networks

PRIVILEGED_PREFIXES = ("/api/sessions", "/api/journal", "/api/admin", "/v1")
INVALID_KEY = "Invalid API key"
KEY_REQUIRED = "An API key is required"


def privileged(path: str, prefixes: Iterable[str] = PRIVILEGED_PREFIXES) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


class ApiKeyAuthentication:
    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "X-API-Key",
        require_api_key: bool = False,
        privileged_prefixes: Iterable[str] = PRIVILEGED_PREFIXES,
        trusted_proxies: list[str] | None = None,
        license_url: str | None = None,
        api_keys: ApiKeys | None = None,
    ) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self.require = require_api_key
        self.prefixes = tuple(privileged_prefixes)
        self.trusted = parse_networks(trusted_proxies or [])
        self.license_url = license_url
        self.api_keys = api_keys
        self.log = get_logger("bastion.auth.api_keys")

    def _runtime(self, scope: Scope) -> ApiKeys | None:
        if self.api_keys is not None:
            return self.api_keys
        found = getattr(getattr(scope.get("app"), "state", None), "api_keys", None)
        return found if isinstance(found, ApiKeys) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = dict(scope.get("state") or {})
        scope["state"] = state
        try:
            await self._authenticate(scope, state)
        except BastionError as exc:
            await send_domain_error(scope, send, exc, license_url=self.license_url)
            return
        await self.app(scope, receive, send)

    def _presented(self, scope: Scope) -> tuple[str | None, str | None, bool]:
        """(the key, another bearer value, whether an access cookie came without Authorization).

        401 for ambiguous input (two keys)."""
        keys: list[bytes] = []
        authorization: list[bytes] = []
        for name, value in scope.get("headers", ()):
            if name == self.header:
                keys.append(value)
            elif name == b"authorization":
                authorization.append(value)
        other_bearer: str | None = None
        cookie = False
        if len(authorization) == 1:
            scheme, _, value = authorization[0].strip().partition(b" ")
            value = value.strip()
            if scheme.lower() == b"bearer" and value.startswith(PREFIX.encode()):
                keys.append(value)
            elif scheme.lower() == b"bearer":
                other_bearer = value.decode("latin-1")
        elif not authorization:
            cookie = ACCESS_COOKIE in request_cookies(scope)
        if len(keys) > 1:
            raise Unauthorized(INVALID_KEY)
        # latin-1 keeps every byte; non-ASCII keys are then refused like any malformed key.
        key = keys[0].decode("latin-1").strip() if keys else None
        return key, other_bearer, cookie

    async def _authenticate(self, scope: Scope, state: dict[str, Any]) -> None:
        presented, other_bearer, cookie = self._presented(scope)
        runtime = self._runtime(scope)
        user_token = cookie or other_bearer is not None
        # Static keys have no prefix; clients such as the OpenAI SDK send them as bearer tokens.
        # A bearer value that is a configured static key is that key, not an access token.
        if (
            presented is None
            and other_bearer is not None
            and runtime is not None
            and runtime.static.match(other_bearer) is not None
        ):
            presented, user_token = other_bearer, False
        if presented is not None:
            if runtime is None:
                raise ServiceUnavailable("Authentication is not available", retry_after=1)
            ip = state.get("client_ip")
            if not isinstance(ip, str):
                ip = client_ip(scope, self.trusted)
            try:
                principal = await runtime.authenticate(presented, ip=ip)
            except KeyRejected as rejected:
                # For the anomaly detector (repeated refusals of one key): alerted on, never blocked.
                state["rejected_api_key_id"] = rejected.key_id
                await self._failed(scope, runtime, rejected, ip)
                raise Unauthorized(INVALID_KEY) from None
            state["api_key_principal"] = principal
            if state.get("principal") is None and not user_token:
                state["principal"] = principal
        if self.require and privileged(scope.get("path", ""), self.prefixes):
            current = state.get("principal")
            service = isinstance(current, Principal) and current.method is AuthMethod.MTLS
            if state.get("api_key_principal") is None and not service:
                raise Unauthorized(KEY_REQUIRED)

    async def _failed(self, scope: Scope, runtime: ApiKeys, rejected: KeyRejected, ip: str | None) -> None:
        request_id = scope["state"].get("request_id")
        metrics_of(scope.get("app")).auth_failure(rejected.reason)
        await runtime.record_rejection(rejected, ip=ip, request_id=request_id, path=scope.get("path", ""))
        limiter = getattr(getattr(scope.get("app"), "state", None), "limiter", None)
        if limiter is None:
            return
        try:
            # Counted per address only: counting wrong secrets against the key id would let anyone
            # who saw a key's public id get the real key blocked.
            await limiter.record_failed_authentication(ip=ip, request_id=request_id)
        except Exception as exc:  # the 401 stands whatever the limiter's state
            self.log.warning("auth_failure_not_counted", error=type(exc).__name__)
