# SPDX-License-Identifier: Apache-2.0
"""The blocklist and the global per-client rate limit, as one pure-ASGI layer.

Sits after the request context (so its responses carry the request id) and after trusted-proxy
resolution (so it limits the real client, never an address a client forged in X-Forwarded-For),
before any route work. Blocked clients get 403 and over-limit clients 429, both in the error shape;
admitted responses carry X-RateLimit-Limit/Remaining/Reset. The limiter is read from
``app.state.limiter`` (built by the lifespan) unless one is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.auth.principal import Principal
from bastion.errors import BastionError, Blocked, RateLimited, ServiceUnavailable
from bastion.observability.logging import get_logger
from bastion.observability.metrics import NULL_METRICS, NullMetrics, metrics_of
from bastion.ratelimit.algorithm import Outcome, RawDecision
from bastion.ratelimit.policies import Policy, identity_for
from bastion.ratelimit.policies import Scope as IdentityScope
from bastion.ratelimit.service import RateLimiter
from bastion.web.errors import send_domain_error
from bastion.web.proxies import client_ip, parse_networks

# Probes and scrapes are documented as unlimited; a blocked load balancer must still see health.
DEFAULT_EXEMPT = ("/health", "/health/ready", "/metrics")
# A decision's fields by position (``Decision``'s order), for the plain tuples of the local path.
_OUTCOME, _REMAINING, _RETRY_AFTER, _RESET_AFTER = range(4)
ALLOWED = int(Outcome.ALLOWED)
NEWLY_BLOCKED = int(Outcome.NEWLY_BLOCKED)


_HEADER_NAMES = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
_HEADER_KEYS = tuple(name.lower().encode() for name in _HEADER_NAMES)  # as an ASGI message carries them


def _header_values(limit: int, decision: RawDecision) -> tuple[int, int, int]:
    remaining = int(decision[_REMAINING])
    return (limit, remaining if remaining > 0 else 0, max(0, math.ceil(decision[_RESET_AFTER])))


def rate_limit_headers(limit: int, decision: RawDecision) -> dict[str, str]:
    """The X-RateLimit-* headers for a decision (Reset: seconds until the bucket is full again).

    Takes a ``Decision`` or the in-process path's plain tuple, so fields are read by index.
    """
    values = _header_values(limit, decision)
    return {name: str(value) for name, value in zip(_HEADER_NAMES, values, strict=True)}


def rate_limit_header_pairs(limit: int, decision: RawDecision) -> list[tuple[bytes, bytes]]:
    """``rate_limit_headers`` as an ASGI message's header list."""
    values = _header_values(limit, decision)
    return [(name, b"%d" % value) for name, value in zip(_HEADER_KEYS, values, strict=True)]


def denial(
    decision: RawDecision,
    headers: dict[str, str],
    *,
    policy: Policy,
    metrics: NullMetrics = NULL_METRICS,
    state: dict[str, Any] | None = None,
) -> BastionError:
    """The domain error for a decision (a ``Decision`` or a plain tuple) that did not admit.

    A 429 names its policy in the request's ``state`` (``rate_limited``), where the audit of
    violations (``bastion.ratelimit.audit.ViolationAudit``) finds it once the answer is sent.
    """
    if decision[_OUTCOME] in (Outcome.BLOCKED, Outcome.NEWLY_BLOCKED):
        return Blocked()
    metrics.rate_limited(policy.value)
    if state is not None:
        state["rate_limited"] = policy.value
    exc = RateLimited(retry_after=decision[_RETRY_AFTER])
    exc.headers.update(headers)
    return exc


class RateLimit:
    """Refuses blocked clients (403) and clients over the global limit (429) before routing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: Iterable[str] = (),
        license_url: str | None = None,
        limiter: RateLimiter | None = None,
        policy: Policy = Policy.GLOBAL,
        exempt_paths: Iterable[str] = DEFAULT_EXEMPT,
    ) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)
        self.license_url = license_url
        self.limiter = limiter
        self.policy = policy
        self.exempt = frozenset(exempt_paths)
        self.log = get_logger("bastion.ratelimit")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        state = scope.get("state") or {}
        app_state = getattr(scope.get("app"), "state", None)
        limiter = self.limiter or getattr(app_state, "limiter", None)
        if not isinstance(limiter, RateLimiter):
            # No limiter (an app run without its lifespan): fail closed, never silently unlimited.
            self.log.error("ratelimit_not_configured", path=scope["path"])
            await send_domain_error(
                scope, send, ServiceUnavailable(retry_after=1), license_url=self.license_url
            )
            return
        # The proxy layer's resolution when it ran; otherwise the same resolution done here.
        ip = state.get("client_ip")
        if not isinstance(ip, str):
            ip = client_ip(scope, self.trusted)
        try:
            limit, decision = await self._decide(scope, state, app_state, limiter, ip)
        except BastionError as exc:
            await send_domain_error(scope, send, exc, license_url=self.license_url)
            return
        extra = rate_limit_header_pairs(limit, decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = message.get("headers", ())
                # A route's own policy is the more specific answer: its headers win.
                if not any(name == b"x-ratelimit-limit" for name, _ in existing):
                    message["headers"] = [*existing, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _decide(
        self, scope: Scope, state: dict[str, Any], app_state: Any, limiter: RateLimiter, ip: str | None
    ) -> tuple[int, RawDecision]:
        """The limit and the decision of an admitted request; the error of a refused one."""
        # The limit counts against the authenticated identity; the address may be blocked on
        # its own (an extra call, made only when authentication runs before this layer).
        address = limiter.ip_identity(ip)
        principal = state.get("principal")
        if isinstance(principal, Principal):
            identity = identity_for(IdentityScope.CLIENT, principal, ip, limiter.ipv6_prefix)
            if identity != address and await limiter.blocked(address):
                raise Blocked()
        else:
            identity = address
        # An IPv6 client is counted by its prefix network, but an admin may block one address
        # of it: that block is its own identity (an extra call, for IPv6 clients only).
        if ip is not None and address != f"ip:{ip}" and await limiter.blocked(f"ip:{ip}"):
            raise Blocked()
        # Network (CIDR) blocks: an in-memory check against the blocklist's cached networks.
        blocklist = getattr(app_state, "blocklist", None)
        if blocklist is not None and await blocklist.network_blocked(ip):
            raise Blocked()
        request_id = state.get("request_id")
        decide = limiter.decider(self.policy)
        decision: RawDecision
        if decide is not None:
            # In-process storage: a plain call, no coroutine; a block it placed is announced.
            decision = decide(identity)
            if decision[0] == NEWLY_BLOCKED:
                await limiter.announce_violation_block(identity, request_id=request_id)
        else:
            decision = await limiter.hit(self.policy, identity, request_id=request_id)
        limit = limiter.rule(self.policy).rate.limit
        if decision[0] != ALLOWED:
            raise denial(
                decision,
                rate_limit_headers(limit, decision),
                policy=self.policy,
                metrics=metrics_of(scope.get("app")),
                state=scope.get("state"),
            )
        return limit, decision
