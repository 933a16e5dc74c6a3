# SPDX-License-Identifier: Apache-2.0
"""Quotas that outlive a rate window: active chat sessions, and a daily model-token budget.

Session slots are sorted-set members scored by an idle expiry: a session holds a slot in its API
key's set and in the global set (both under one hash tag, so taking both is one atomic script),
``touch`` keeps an active session's slot, ``release`` frees it when the session ends, and a
session abandoned without ``release`` frees its slot once idle for the TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage.base import BudgetSettlement


@dataclass(frozen=True, slots=True)
class SessionSlot:
    acquired: bool
    owner_active: int | None
    total_active: int


class SessionQuota:
    """MAX_SESSIONS_PER_API_KEY per key and MAX_TOTAL_SESSIONS overall, held until released."""

    TOTAL = "slots:{sessions}:total"

    def __init__(self, limiter: RateLimiter, *, per_owner: int, total: int, idle_ttl: float) -> None:
        self.limiter = limiter
        self.per_owner = per_owner
        self.total = total
        self.idle_ttl = idle_ttl

    def _keys(self, owner: str | None) -> tuple[str, ...]:
        if owner is None:
            return (self.TOTAL,)
        return (f"slots:{{sessions}}:{owner}", self.TOTAL)

    def _limits(self, owner: str | None) -> tuple[int, ...]:
        return (self.total,) if owner is None else (self.per_owner, self.total)

    async def acquire(self, session_id: str, *, owner: str | None) -> SessionSlot:
        """Take a slot for a new session of ``owner`` (``key:<id>``; None counts only the total)."""
        now = self.limiter.clock()
        keys = self._keys(owner)
        result = await self.limiter.run(
            lambda s: s.acquire_slots(keys, self._limits(owner), session_id, now, now + self.idle_ttl)
        )
        counts = result.counts
        return SessionSlot(result.acquired, counts[0] if owner is not None else None, counts[-1])

    async def touch(self, session_id: str, *, owner: str | None) -> bool:
        """Keep an active session's slot for another idle TTL; False when it had lapsed."""
        now = self.limiter.clock()
        keys = self._keys(owner)
        return await self.limiter.run(lambda s: s.renew_slots(keys, session_id, now, now + self.idle_ttl))

    async def release(self, session_id: str, *, owner: str | None) -> None:
        """Free the session's slot (idempotent)."""
        keys = self._keys(owner)
        await self.limiter.run(lambda s: s.release_slots(keys, session_id))

    async def active(self, owner: str | None = None) -> int:
        now = self.limiter.clock()
        key = self._keys(owner)[0]
        return await self.limiter.run(lambda s: s.count_slots(key, now))


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens held for one call until it settles; ``key`` is None when no budget is configured."""

    owner: str
    key: str | None
    amount: int
    granted: bool
    remaining: int  # after this reservation; -1 when unlimited
    resets_at: float  # when today's budget starts afresh (the next UTC midnight)


class TokenBudget:
    """An optional per-key budget of model tokens per UTC day (RATE_LIMIT_TOKEN_BUDGET_PER_DAY).

    A call reserves its worst case before it reaches the model and settles with what it really
    spent when it ends, both atomic in the storage, so concurrent calls can never all pass a check
    that only one of them could afford.
    """

    def __init__(self, limiter: RateLimiter, *, per_day: int | None) -> None:
        self.limiter = limiter
        self.per_day = per_day

    def _today(self, owner: str) -> tuple[str, float, float]:
        now = self.limiter.clock()
        day = datetime.fromtimestamp(now, UTC)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        return f"budget:{{{owner}}}:{day:%Y-%m-%d}", now, midnight.timestamp()

    async def reserve(self, owner: str, tokens: int) -> Reservation:
        """Hold ``tokens`` of ``owner``'s budget for today, all or nothing.

        With no budget configured everything is granted (``remaining`` is -1, meaning unlimited).
        """
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        key, now, resets_at = self._today(owner)
        limit = self.per_day
        if limit is None:
            return Reservation(owner, None, tokens, True, -1, resets_at)
        result = await self.limiter.run(lambda s: s.reserve_budget(key, tokens, limit, now, resets_at))
        return Reservation(owner, key, tokens, result.allowed, result.remaining, resets_at)

    async def settle(self, reservation: Reservation, tokens: int) -> BudgetSettlement | None:
        """Replace a granted reservation by the ``tokens`` the call really spent (None: unlimited)."""
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        key, limit = reservation.key, self.per_day
        if key is None or limit is None or not reservation.granted:
            return None
        now = self.limiter.clock()
        held, expires_at = reservation.amount, reservation.resets_at
        return await self.limiter.run(lambda s: s.settle_budget(key, held, tokens, limit, now, expires_at))

    async def today(self, owner: str) -> BudgetSettlement | None:
        """``owner``'s totals for today: tokens charged and tokens held (None: unlimited)."""
        key, now, resets_at = self._today(owner)
        limit = self.per_day
        if limit is None:
            return None
        return await self.limiter.run(lambda s: s.settle_budget(key, 0, 0, limit, now, resets_at))
