# SPDX-License-Identifier: Apache-2.0
"""One identity's rate-limit state for administrators: inspect it, reset it.

``GET /api/admin/rate-limits/{identity}`` answers, for every policy, what the identity has left
(``remaining``), when its bucket is full again and when its next request is admitted, with its
escalation counters (violations, authentication failures) and any block on it.
``DELETE`` refills every allowance and forgets the counters; a block in force stays, and is lifted
through the blocklist (``DELETE /api/admin/blocklist/...``) where lifting is audited as such.

Identities are written as the limiter counts them: ``ip:203.0.113.9`` (an IPv6 address is taken
to its RATE_LIMIT_IPV6_PREFIX network, as its requests are counted), ``key:<id>``,
``user:<id>``, ``email:<address>`` (hashed here, as the password-reset limit stores it; no
address is kept by the limiter) and ``global``. Both routes are audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel

from bastion.addresses import parse_address
from bastion.api.audit import record_action
from bastion.api.deps import require
from bastion.api.routes.admin_blocks import BlockOut, block_out, get_blocklist
from bastion.audit.events import AuditEvent
from bastion.auth.emails import InvalidEmail, normalize_email
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.errors import InvalidField
from bastion.ratelimit.inspection import policy_state
from bastion.ratelimit.policies import email_identity
from bastion.ratelimit.service import RateLimiter

MANAGE = require(Permission.RATE_LIMITS_MANAGE)
router = APIRouter(prefix="/api/admin/rate-limits", tags=["admin"], dependencies=[Depends(MANAGE)])
Admin = Annotated[Principal, Depends(MANAGE)]
IdentityPath = Annotated[
    str,
    Path(
        pattern=r"^(global|(ip|key|user|email):[A-Za-z0-9._:@+\-]{1,254})$",
        description="ip:<address>, key:<id>, user:<id>, email:<address> or global",
    ),
]


class PolicyStateOut(BaseModel):
    policy: str
    limit: int
    period_seconds: float
    burst: int
    remaining: int
    reset_seconds: float
    retry_after_seconds: float
    tracked: bool


class RateLimitState(BaseModel):
    identity: str
    policies: list[PolicyStateOut]
    violations: int
    auth_failures: int
    block: BlockOut | None
    # ip: identities only: whether a blocked network (a cidr block) covers the address.
    network_blocked: bool | None = None
    as_of: datetime


def canonical_identity(raw: str, limiter: RateLimiter) -> str:
    """The identity as the limiter stores it; 422 for a value that is not of its kind."""
    kind, _, value = raw.partition(":")
    if kind == "ip":
        if parse_address(value) is None:
            raise InvalidField("path.identity", "ip_address", "Not an IP address")
        return limiter.ip_identity(value)
    if kind == "email":
        if "@" not in value:  # already the stored form: 32 hex digits of the address's hash
            if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
                raise InvalidField("path.identity", "value_error", "Not an e-mail address")
            return raw
        try:
            return email_identity(normalize_email(value))
        except InvalidEmail as exc:
            raise InvalidField("path.identity", "value_error", str(exc)) from None
    if kind in ("key", "user") and not all(c.isalnum() or c in "._-" for c in value):
        raise InvalidField("path.identity", "string_pattern_mismatch", "Not an id")
    return raw


def get_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.limiter
    return limiter


@router.get("/{identity}", response_model=RateLimitState)
async def inspect_rate_limits(identity: IdentityPath, request: Request, admin: Admin) -> RateLimitState:
    limiter = get_limiter(request)
    canonical = canonical_identity(identity, limiter)
    state, now = await limiter.inspect(canonical)
    network_blocked = None
    if canonical.startswith("ip:"):
        network_blocked = await get_blocklist(request).network_blocked(canonical.partition(":")[2])
    answer = RateLimitState(
        identity=canonical,
        policies=[
            PolicyStateOut.model_validate(
                policy_state(rule, state.buckets.get(rule.name), now), from_attributes=True
            )
            for rule in limiter.rules.values()
        ],
        violations=state.violations,
        auth_failures=state.auth_failures,
        block=block_out(state.block) if state.block is not None else None,
        network_blocked=network_blocked,
        as_of=datetime.fromtimestamp(now, UTC),
    )
    await record_action(
        request, admin, AuditEvent.RATE_LIMIT_STATE_READ, target_type="rate_limit", target_id=canonical
    )
    return answer


@router.delete("/{identity}", status_code=status.HTTP_204_NO_CONTENT)
async def reset_rate_limits(identity: IdentityPath, request: Request, admin: Admin) -> Response:
    limiter = get_limiter(request)
    canonical = canonical_identity(identity, limiter)
    before, _ = await limiter.inspect(canonical)
    await limiter.reset(canonical)
    await record_action(
        request,
        admin,
        AuditEvent.RATE_LIMIT_RESET,
        target_type="rate_limit",
        target_id=canonical,
        # What the reset cleared: the policies that held state and the counters.
        details={
            "policies": sorted(before.buckets),
            "violations": before.violations,
            "auth_failures": before.auth_failures,
        },
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
