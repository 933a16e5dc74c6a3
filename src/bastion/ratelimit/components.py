# SPDX-License-Identifier: Apache-2.0
"""Everything rate limiting puts on ``app.state``, built once by the lifespan from settings."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.addresses import parse_networks
from bastion.audit.service import AuditService
from bastion.failover import fail_mode_of
from bastion.invalidation import Watched, version_counter
from bastion.ratelimit.audit import audit_blocks
from bastion.ratelimit.blocklist import Blocklist
from bastion.ratelimit.leases import ConcurrencyLimiter
from bastion.ratelimit.policies import Policy
from bastion.ratelimit.quotas import SessionQuota, TokenBudget
from bastion.ratelimit.service import Clock, RateLimiter
from bastion.redis_client import RedisClient
from bastion.settings import Settings


@dataclass(frozen=True, slots=True)
class RateLimiting:
    limiter: RateLimiter
    concurrency: dict[Policy, ConcurrencyLimiter]
    sessions: SessionQuota
    tokens: TokenBudget
    blocklist: Blocklist

    async def start(self) -> None:
        """Register the Redis scripts up front when Redis answers (they load lazily otherwise)."""
        from bastion.ratelimit.service import STORAGE_ERRORS
        from bastion.ratelimit.storage import RedisStorage

        storage = self.limiter.storage
        if isinstance(storage, RedisStorage):
            try:
                await storage.load_scripts()
            except STORAGE_ERRORS as exc:
                self.limiter.log.warning("ratelimit_scripts_not_loaded", error=type(exc).__name__)

    async def aclose(self) -> None:
        await self.limiter.aclose()


def build_rate_limiting(
    settings: Settings,
    *,
    redis: RedisClient | None,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    clock: Clock = time.time,
) -> RateLimiting:
    on_block = audit_blocks(AuditService(sessionmaker=sessionmaker)) if sessionmaker is not None else None
    limiter = RateLimiter.from_settings(settings, redis=redis, clock=clock, on_block=on_block)
    blocklist = Blocklist(
        limiter,
        Watched(
            version_counter(redis, "blocklist", fail_mode=fail_mode_of(settings)),
            interval=settings.invalidation_poll_seconds,
        ),
        protected=parse_networks(settings.trusted_proxies),
    )
    # Every block placed or lifted on a key or a user reaches every instance's cached answers.
    limiter.on_block = blocklist.listener(on_block)
    return RateLimiting(
        limiter=limiter,
        concurrency={
            Policy.VOICE: ConcurrencyLimiter(
                limiter,
                name="voice",
                limit=settings.rate_limit_voice_concurrent,
                ttl=float(settings.rate_limit_voice_lease_seconds),
            )
        },
        sessions=SessionQuota(
            limiter,
            per_owner=settings.max_sessions_per_api_key,
            total=settings.max_total_sessions,
            idle_ttl=settings.session_ttl_minutes * 60.0,
        ),
        tokens=TokenBudget(limiter, per_day=settings.rate_limit_token_budget_per_day),
        blocklist=blocklist,
    )
