# SPDX-License-Identifier: Apache-2.0
"""Blocked API keys and users, refused (403) as soon as authentication has said who is calling.

The address and network blocks are enforced further out, by ``RateLimit``, before authentication.
Key and user blocks need the caller, so this layer sits right inside the authentication layers,
before routing: a blocked key or user is refused before any route work, on every route. It checks
the key that was presented (even when a user's token made the user the caller), the caller's key
and the caller's user, all in one lookup (one round trip), whose answer the blocklist keeps for a
moment (``Blocklist.principal_blocked``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.auth.principal import Principal
from bastion.errors import Blocked, ServiceUnavailable
from bastion.ratelimit.blocklist import Blocklist
from bastion.ratelimit.service import RateLimiter
from bastion.web.errors import send_domain_error


def identities(state: dict[str, object]) -> tuple[str, ...]:
    """The presented key's and the caller's identities, each once, the key's first."""
    presented = state.get("api_key_principal")
    caller = state.get("principal")
    found = presented.identities if isinstance(presented, Principal) else ()
    if isinstance(caller, Principal) and caller is not presented:
        found += tuple(name for name in caller.identities if name not in found)
    return found


class PrincipalBlocks:
    def __init__(self, app: ASGIApp, *, license_url: str | None = None) -> None:
        self.app = app
        self.license_url = license_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            state = scope.get("state") or {}
            names = identities(state)
            if names:
                app_state = getattr(scope.get("app"), "state", None)
                limiter = getattr(app_state, "limiter", None)
                blocklist = getattr(app_state, "blocklist", None)
                refusal: Blocked | ServiceUnavailable | None = None
                try:
                    if isinstance(blocklist, Blocklist):
                        # Answered from memory, kept in step with every instance.
                        if await blocklist.principal_blocked(names):
                            refusal = Blocked()
                    elif isinstance(limiter, RateLimiter) and await limiter.blocked_any(names) is not None:
                        refusal = Blocked()
                except ServiceUnavailable as exc:  # fail closed, as the limiter's mode says
                    refusal = exc
                if refusal is not None:
                    await send_domain_error(scope, send, refusal, license_url=self.license_url)
                    return
        await self.app(scope, receive, send)
