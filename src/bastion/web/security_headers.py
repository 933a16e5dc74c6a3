# SPDX-License-Identifier: Apache-2.0
"""Browser-facing security headers on every response: successes, errors, redirects, preflights."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.crypto.randomness import REQUEST_RANDOM

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Pages: scripts and styles only with this response's nonce ('strict-dynamic' lets a nonced loader
# add more scripts); never 'unsafe-inline' or 'unsafe-eval'.
HTML_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self'; font-src 'self'; connect-src 'self'; manifest-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_API_CSP = (b"content-security-policy", API_CSP.encode())
HSTS_MAX_AGE = 31_536_000
X_XSS_PROTECTION_VALUES = ("0", "1; mode=block")

# Headers this layer owns: whatever the app set for them is replaced. `Server` and `X-Powered-By`
# name the software and version, which only helps an attacker pick an exploit.
_OWNED = frozenset(
    {
        b"x-content-type-options",
        b"x-frame-options",
        b"referrer-policy",
        b"permissions-policy",
        b"content-security-policy",
        b"cross-origin-opener-policy",
        b"cross-origin-resource-policy",
        b"cross-origin-embedder-policy",
        b"x-xss-protection",
        b"x-permitted-cross-domain-policies",
        b"strict-transport-security",
        b"server",
        b"x-powered-by",
    }
)
_CACHE = frozenset({b"cache-control", b"pragma"})


def _permissions_policy(microphone: bool) -> bytes:
    mic = "microphone=(self)" if microphone else "microphone=()"
    return f"geolocation=(), {mic}, camera=()".encode()


_PERMISSIONS = {allowed: (b"permissions-policy", _permissions_policy(allowed)) for allowed in (False, True)}


class SecurityHeaders:
    """Adds the security headers to every HTTP response that passes through it.

    - API responses get a CSP that allows nothing; ``text/html`` responses get a strict nonce-based
      policy. The nonce is made before the app runs and is available to page handlers as
      ``scope["state"]["csp_nonce"]`` (``request.state.csp_nonce``).
    - ``Cache-Control: no-store`` (and ``Pragma: no-cache``) on every error (status >= 400) and on
      every response to a request that carried credentials (Authorization, a cookie or the API key
      header); a public success keeps whatever Cache-Control its route chose.
    - HSTS only over https (the scheme after trusted-proxy resolution): browsers ignore it over
      http and an http response is exactly what an attacker in the middle could forge anyway.
    - The microphone is allowed (``microphone=(self)``) only under ``microphone_paths`` prefixes.
    - ``extra_headers`` are added to every response too (the license link).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key_header: str = "X-API-Key",
        microphone_paths: Iterable[str] = (),
        x_xss_protection: str = "0",
        hsts_max_age: int = HSTS_MAX_AGE,
        hsts_include_subdomains: bool = True,
        hsts_preload: bool = True,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        if x_xss_protection not in X_XSS_PROTECTION_VALUES:
            raise ValueError(f"x_xss_protection must be one of {X_XSS_PROTECTION_VALUES}")
        self.app = app
        self.credential_headers = frozenset({b"authorization", b"cookie", api_key_header.lower().encode()})
        self.microphone_prefixes = tuple(p.rstrip("/") for p in microphone_paths if p.strip("/"))
        hsts = f"max-age={hsts_max_age}"
        if hsts_include_subdomains:
            hsts += "; includeSubDomains"
        if hsts_preload:
            hsts += "; preload"
        self.hsts = hsts.encode()
        self.fixed: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"cross-origin-embedder-policy", b"require-corp"),
            (b"x-permitted-cross-domain-policies", b"none"),
            (b"x-xss-protection", x_xss_protection.encode()),
            # Operator headers (e.g. LICENSE_HEADER: LICENSE_URL), validated by the settings.
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra_headers),
        ]

    def _microphone_allowed(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.microphone_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = REQUEST_RANDOM.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        credentialed = any(name in self.credential_headers for name, _ in scope.get("headers", ()))
        https = scope.get("scheme") == "https"
        microphone = self._microphone_allowed(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status: int = message["status"]
                no_store = status >= 400 or credentialed
                html = False
                kept: list[tuple[bytes, bytes]] = []
                for name, value in message.get("headers", ()):
                    lower = name.lower()
                    if lower == b"content-type":
                        html = value.split(b";", 1)[0].strip().lower() == b"text/html"
                    if lower in _OWNED or (no_store and lower in _CACHE):
                        continue
                    kept.append((name, value))
                kept.extend(self.fixed)
                kept.append(_PERMISSIONS[microphone])
                kept.append(
                    (b"content-security-policy", HTML_CSP.format(nonce=nonce).encode()) if html else _API_CSP
                )
                if https:
                    kept.append((b"strict-transport-security", self.hsts))
                if no_store:
                    kept.append((b"cache-control", b"no-store"))
                    kept.append((b"pragma", b"no-cache"))
                message = {**message, "headers": kept}
            await send(message)

        await self.app(scope, receive, send_with_headers)
