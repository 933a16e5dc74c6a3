# SPDX-License-Identifier: Apache-2.0
"""Concurrency limits with leases: at most N requests of a kind in flight per identity.

A lease is a member of a sorted set scored by its expiry. It is taken when a request starts and
given back when the request ends, fails or its client goes away; if the instance holding it dies,
the lease simply stops counting once its TTL passes (every acquire first drops expired members),
so a crash never leaks a slot for longer than ``ttl``. Long requests may ``renew``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bastion.errors import RateLimited
from bastion.ratelimit.service import RateLimiter


@dataclass(frozen=True, slots=True)
class Lease:
    key: str
    member: str


class ConcurrencyLimiter:
    """``limit`` concurrent holders per identity for one kind of request (e.g. voice uploads)."""

    def __init__(self, limiter: RateLimiter, *, name: str, limit: int, ttl: float) -> None:
        if limit < 1 or ttl <= 0:
            raise ValueError("a concurrency limit needs limit >= 1 and a positive ttl")
        self.limiter = limiter
        self.name = name
        self.limit = limit
        self.ttl = ttl

    def key(self, identity: str) -> str:
        return f"lease:{{{identity}}}:{self.name}"

    async def acquire(self, identity: str) -> Lease | None:
        """Take a lease, or None when ``limit`` are already held."""
        lease = Lease(self.key(identity), secrets.token_hex(12))
        now = self.limiter.clock()
        result = await self.limiter.run(
            lambda s: s.acquire_slots((lease.key,), (self.limit,), lease.member, now, now + self.ttl)
        )
        return lease if result.acquired else None

    async def release(self, lease: Lease) -> None:
        """Give a lease back (idempotent)."""
        await self.limiter.run(lambda s: s.release_slots((lease.key,), lease.member))

    async def renew(self, lease: Lease) -> bool:
        """Extend a lease by ``ttl``; False when it had already expired."""
        now = self.limiter.clock()
        return await self.limiter.run(
            lambda s: s.renew_slots((lease.key,), lease.member, now, now + self.ttl)
        )

    async def in_flight(self, identity: str) -> int:
        now = self.limiter.clock()
        return await self.limiter.run(lambda s: s.count_slots(self.key(identity), now))

    @asynccontextmanager
    async def hold(self, identity: str) -> AsyncIterator[Lease]:
        """Hold a lease for the block's duration; ``RateLimited`` when none is free.

        The lease is released however the block ends: normally, by an exception, or by
        cancellation (a client disconnect that cancels the request task).
        """
        lease = await self.acquire(identity)
        if lease is None:
            raise RateLimited("Too many concurrent requests", retry_after=1)
        try:
            yield lease
        finally:
            await self.release(lease)
