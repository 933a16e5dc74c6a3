# SPDX-License-Identifier: Apache-2.0
"""Quotas that outlive a rate window: active chat sessions, and a daily model-token budget.

Session slots are sorted-set members scored by an idle expiry: a session holds a slot in its API
key's set and in the global set (both under one hash tag, so taking both is one atomic script),
``touch`` keeps an active session's slot, ``release`` frees it when the session ends, and a
session abandoned without ``release`` frees its slot once idle for the TTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bastion.ratelimit.algorithm import PERIODS
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage.base import BudgetCall, BudgetResult, BudgetSettlement, Rider, SlotRenewal

_DAY = PERIODS["day"]


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

    def renewal(self, session_id: str, *, owner: str | None) -> SlotRenewal:
        """``touch`` as part of an admission (``RateLimiter.admit``)."""
        return SlotRenewal(self._keys(owner), session_id, self.limiter.clock() + self.idle_ttl)

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
        self._day = (-1, "", 0.0)  # the last UTC day seen: its number since the epoch, date, end

    def _today(self, owner: str) -> tuple[str, float, float]:
        now = self.limiter.clock()
        number = int(now // _DAY)  # UTC days: POSIX time has no leap seconds
        if number != self._day[0]:
            start = datetime.fromtimestamp(number * _DAY, UTC)
            self._day = (number, f"{start:%Y-%m-%d}", (number + 1) * _DAY)
        _, date, midnight = self._day
        return f"budget:{{{owner}}}:{date}", now, midnight

    async def reserve(self, owner: str, tokens: int) -> Reservation:
        """Hold ``tokens`` of ``owner``'s budget for today, all or nothing.

        With no budget configured everything is granted (``remaining`` is -1, meaning unlimited).
        """
        call, resets_at = self.reservation_call(owner, tokens)
        if call is None:
            return self.reservation(owner, tokens, None, None, resets_at)
        now = self.limiter.clock()
        result = await self.limiter.run(
            lambda s: s.reserve_budget(call.key, tokens, call.limit, now, call.expires_at)
        )
        return self.reservation(owner, tokens, call, result, resets_at)

    def reservation_call(self, owner: str, tokens: int) -> tuple[BudgetCall | None, float]:
        """``reserve``'s storage call (None: no budget configured) and when today's budget resets,
        for reserving with other decisions in one ``RateLimiter.admit``."""
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        key, _now, resets_at = self._today(owner)
        if self.per_day is None:
            return None, resets_at
        return BudgetCall(key, tokens, self.per_day, resets_at), resets_at

    @staticmethod
    def reservation(
        owner: str, tokens: int, call: BudgetCall | None, result: BudgetResult | None, resets_at: float
    ) -> Reservation:
        """The ``Reservation`` a storage answer to ``reservation_call`` stands for."""
        if call is None or result is None:
            return Reservation(owner, None, tokens, True, -1, resets_at)
        return Reservation(owner, call.key, tokens, result.allowed, result.remaining, resets_at)

    async def settle(
        self, reservation: Reservation, tokens: int, riders: Sequence[Rider] = ()
    ) -> BudgetSettlement | None:
        """Replace a granted reservation by the ``tokens`` the call really spent (None: unlimited).

        ``riders`` (other components' scripts) go in the same round trip when the storage can
        take them; those it did not run are left with ``ran`` false.
        """
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        key, limit = reservation.key, self.per_day
        if key is None or limit is None or not reservation.granted:
            return None
        now = self.limiter.clock()
        held, expires_at = reservation.amount, reservation.resets_at
        return await self.limiter.run(
            lambda s: s.settle_budget(key, held, tokens, limit, now, expires_at, riders)
        )

    async def today(self, owner: str) -> BudgetSettlement | None:
        """``owner``'s totals for today: tokens charged and tokens held (None: unlimited)."""
        key, now, resets_at = self._today(owner)
        limit = self.per_day
        if limit is None:
            return None
        return await self.limiter.run(lambda s: s.settle_budget(key, 0, 0, limit, now, resets_at))
