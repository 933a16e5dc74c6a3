# SPDX-License-Identifier: Apache-2.0
"""Route-level limits as dependencies: a route names its policy in one line.

    @router.post("/api/auth/login", dependencies=[Depends(rate_limit(Policy.LOGIN))])
    @router.post("/api/sessions/{id}/voice-chat", dependencies=[Depends(concurrency_limit(Policy.VOICE))])

The identity is the authenticated principal's user or API key when the policy counts per user or
key (``scope["state"]["principal"]``), and the trusted-proxy-resolved client IP otherwise (for an
IPv6 client, its RATE_LIMIT_IPV6_PREFIX network).

A route that calls the model builds ``RouteLimits(request, response, policies)`` in its handler
instead, after its permission was checked: the policies are decided in the same round trip as the
call's token budget (``RouteLimits`` is a ``chat.budget.LimitGate``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from fastapi import Request, Response

from bastion.api.deps import current_principal, request_client_ip
from bastion.errors import Blocked, RateLimited, request_id_of
from bastion.observability.metrics import metrics_of
from bastion.ratelimit.algorithm import Decision, Rate, RawDecision
from bastion.ratelimit.leases import ConcurrencyLimiter, Lease
from bastion.ratelimit.policies import Policy, Scope, identity_for
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage.base import LimitCall
from bastion.web.ratelimit import ALLOWED, NEWLY_BLOCKED, denial, rate_limit_headers


def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


def request_identity(request: Request, scope: Scope) -> str:
    """Whose allowance a policy of ``scope`` spends for this request."""
    ipv6_prefix = get_limiter(request).ipv6_prefix
    return identity_for(scope, current_principal(request), request_client_ip(request), ipv6_prefix)


def _allowance(request: Request, policy: Policy, identity: str) -> tuple[str, Rate, Rate | None]:
    """Whose allowance ``policy`` spends, at which rate, and the caller's own rate if it has one."""
    rate = get_limiter(request).rule(policy).rate
    principal = current_principal(request)
    if principal is not None and principal.rate_overrides and identity.startswith(("key:", "user:")):
        # The key's own allowance (e.g. its messages per hour), counted in the same bucket. An
        # allowance an administrator raised above the default takes the key out of its owner's
        # shared budget: its own (administrator-chosen) allowance is its budget there too.
        limit = dict(principal.rate_overrides).get(policy.value)
        if limit is not None:
            override = Rate(limit, rate.period, limit)
            return (f"key:{principal.api_key_id}" if principal.api_key_id else identity), override, override
    return identity, rate, None


def _answer(request: Request, response: Response, policy: Policy, limit: int, decision: RawDecision) -> None:
    """Raise the 429/403 of a refusal; or set the X-RateLimit-* headers of the tightest policy."""
    headers = rate_limit_headers(limit, decision)
    if decision[0] != ALLOWED:
        raise denial(
            decision, headers, policy=policy, metrics=metrics_of(request.app), state=request.scope["state"]
        )
    # A route under several policies reports the tightest one: the fewest requests left.
    current = response.headers.get("X-RateLimit-Remaining")
    if current is None or int(headers["X-RateLimit-Remaining"]) < int(current):
        response.headers.update(headers)


async def enforce_limit(
    request: Request, response: Response, policy: Policy, identity: str, *, cost: int = 1
) -> None:
    """Spend ``identity``'s allowance from inside a handler, for identities only the body names.

    E.g. the per-address password-reset limit:
    ``await enforce_limit(request, response, Policy.PASSWORD_RESET_EMAIL, email_identity(email))``.
    Raises 429/403 like ``rate_limit``; on success sets the X-RateLimit-* headers.
    """
    limiter = get_limiter(request)
    identity, rate, override = _allowance(request, policy, identity)
    decide = limiter.decider(policy) if override is None else None
    decision: RawDecision
    if decide is not None:
        # In-process storage: a plain call, no coroutine; a block it placed is announced.
        decision = decide(identity, cost)
        if decision[0] == NEWLY_BLOCKED:
            await limiter.announce_violation_block(identity, request_id=request_id_of(request))
    else:
        decision = await limiter.hit(policy, identity, cost, request_id=request_id_of(request), rate=override)
    _answer(request, response, policy, rate.limit, decision)


def rate_limit(policy: Policy, *, cost: int = 1) -> Callable[[Request, Response], Awaitable[None]]:
    """A dependency that spends ``cost`` of the caller's allowance under ``policy``.

    Admitted: the response gets X-RateLimit-* headers. Refused: 429 with Retry-After (longer for
    repeat offenders), or 403 when the caller is blocked.
    """

    async def dependency(request: Request, response: Response) -> None:
        scope = get_limiter(request).rule(policy).scope
        await enforce_limit(request, response, policy, request_identity(request, scope), cost=cost)

    dependency.__name__ = f"rate_limit_{policy.value}"
    dependency.spends_allowance = True  # type: ignore[attr-defined]  # see check_route_access
    return dependency


class RouteLimits:
    """A route's policies, decided with its model call's budget in one round trip (a ``LimitGate``
    for ``BudgetGuard``): what ``rate_limit`` dependencies would spend one call each.

    A request that fails before its admission (an unknown session, a refused message) spends them
    anyway with ``spend``, so every attempt costs allowance as under ``rate_limit``.
    """

    def __init__(self, request: Request, response: Response, policies: Sequence[Policy]) -> None:
        self.request = request
        self.response = response
        self.request_id = request_id_of(request)
        limiter = get_limiter(request)
        self._planned = [
            (policy, *_allowance(request, policy, request_identity(request, limiter.rule(policy).scope)))
            for policy in policies
        ]
        self.used = False

    def begin(self) -> list[LimitCall]:
        self.used = True
        limiter = get_limiter(self.request)
        return [
            limiter.limit_call(policy, identity, rate=override)
            for policy, identity, _, override in self._planned
        ]

    def decided(self, decisions: Sequence[Decision | None]) -> None:
        for (policy, _, rate, _), decision in zip(self._planned, decisions, strict=True):
            if decision is not None:
                _answer(self.request, self.response, policy, rate.limit, decision)

    async def spend(self) -> None:
        """Spend the allowances now, unless the admission already did (429/403 when refused)."""
        if self.used:
            return
        self.used = True
        for policy, identity, _, _ in self._planned:
            await enforce_limit(self.request, self.response, policy, identity)


async def refuse_blocked_principal(request: Request) -> None:
    """403 when the authenticated API key or user is blocked.

    The middleware checks the client address (and the principal, when authentication ran before
    it); when authentication is a dependency, add this after it so a blocked key is refused on
    routes without a per-key policy too. One storage call.
    """
    principal = current_principal(request)
    if principal is None:
        return
    limiter = get_limiter(request)
    for identity in (
        f"key:{principal.api_key_id}" if principal.api_key_id else None,
        f"user:{principal.user_id}" if principal.user_id else None,
    ):
        if identity is not None and await limiter.blocked(identity) is not None:
            raise Blocked()


def concurrency_limit(policy: Policy) -> Callable[[Request], AsyncIterator[Lease]]:
    """A dependency that holds one of the caller's concurrent slots for the request's duration.

    The slot is released when the request ends, fails, or its client disconnects (the body read
    raises and the dependency's exit runs), and expires on its own if the instance dies.
    """

    async def dependency(request: Request) -> AsyncIterator[Lease]:
        limiters: dict[Policy, ConcurrencyLimiter] = request.app.state.concurrency
        concurrency = limiters[policy]
        identity = request_identity(request, get_limiter(request).rule(policy).scope)
        held = False
        try:
            async with concurrency.hold(identity) as lease:
                held = True
                yield lease
        except RateLimited:
            if not held:  # refused a lease; a 429 of the route itself is counted where it is raised
                metrics_of(request.app).rate_limited(policy.value)
            raise

    dependency.__name__ = f"concurrency_limit_{policy.value}"
    dependency.spends_allowance = True  # type: ignore[attr-defined]  # see check_route_access
    return dependency
