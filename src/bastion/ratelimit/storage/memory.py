# SPDX-License-Identifier: Apache-2.0
"""In-process storage: the development default, and the fallback when Redis is unreachable.

Atomic without locks: every method reads and writes its dicts with no ``await`` in between, and
asyncio only switches coroutines at an ``await``, so no two decisions interleave. (This holds for
one event loop; each worker process has its own table, which is why startup warns when several
workers run without Redis.) Memory is bounded by ``max_keys`` per table (see ``bounded.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from math import floor
from typing import Protocol

from bastion.ratelimit.algorithm import EPSILON, Decision, Outcome, RawDecision
from bastion.ratelimit.escalation import Escalation, penalty
from bastion.ratelimit.storage.base import (
    Admission,
    Block,
    BucketState,
    BudgetCall,
    BudgetResult,
    BudgetSettlement,
    IdentityState,
    LimitCall,
    Rider,
    SlotRenewal,
    SlotResult,
)
from bastion.ratelimit.storage.bounded import BoundedTable, KeyBudget

DEFAULT_MAX_KEYS = 1_000_000

_ALLOWED = int(Outcome.ALLOWED)
_LIMITED = int(Outcome.LIMITED)
_BLOCKED = int(Outcome.BLOCKED)
_NEWLY_BLOCKED = int(Outcome.NEWLY_BLOCKED)
_FULL = int(Outcome.FULL)
# Builds a Decision from a RawDecision without NamedTuple's Python-level __new__.
_decision = tuple.__new__


class DecideFn(Protocol):
    """One policy's in-process decision: ``now`` defaults to the clock the decider was built with."""

    def __call__(self, identity: str, cost: int = 1, now: float | None = None) -> RawDecision: ...


def _bucket_recovered(state: list[float]) -> float:
    # [tat, penalty_until, strikes, strikes_expire]: forgettable once full and its strikes lapsed.
    return max(state[0], state[1], state[3])


def _abuse_recovered(state: list[float]) -> float:
    # [violations, violations_window_end, auth_failures, auth_failures_window_end]
    return max(state[1], state[3])


def _block_recovered(block: Block) -> float:
    return block.until


def _budget_recovered(state: list[float]) -> float:
    return state[1]


class MemoryStorage:
    """Dict-backed storage with the same semantics as the Redis scripts."""

    name = "memory"

    def __init__(self, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        # One table per policy, keyed by identity alone (no key building on the hot path),
        # all counted against one bound.
        self.bucket_budget = KeyBudget(max_keys)
        self.buckets: dict[str, BoundedTable[list[float]]] = {}
        self.abuse: BoundedTable[list[float]] = BoundedTable(max_keys, _abuse_recovered)
        self.blocks: BoundedTable[Block] = BoundedTable(max_keys, _block_recovered)
        self.budgets: BoundedTable[list[float]] = BoundedTable(max_keys, _budget_recovered)
        self.slots: dict[str, dict[str, float]] = {}
        self._block_data = self.blocks.data
        self._deciders: dict[tuple[str, float, float, int], tuple[Escalation, DecideFn]] = {}

    # -- rate decisions ----------------------------------------------------------------------

    async def decide(
        self,
        identity: str,
        bucket: str,
        now: float,
        interval: float,
        tolerance: float,
        cost: int,
        escalation: Escalation,
    ) -> Decision:
        return self.decide_now(identity, bucket, now, interval, tolerance, cost, escalation)

    def decide_now(
        self,
        identity: str,
        bucket: str,
        now: float,
        interval: float,
        tolerance: float,
        cost: int,
        escalation: Escalation,
    ) -> Decision:
        """``decide`` without the coroutine."""
        cache_key = (bucket, interval, tolerance, id(escalation))
        cached = self._deciders.get(cache_key)
        if cached is None or cached[0] is not escalation:
            if len(self._deciders) > 256:
                self._deciders.clear()
            cached = (escalation, self.decider(bucket, interval, tolerance, escalation))
            self._deciders[cache_key] = cached
        return _decision(Decision, cached[1](identity, cost, now))

    def decider(
        self,
        bucket: str,
        interval: float,
        tolerance: float,
        escalation: Escalation,
        clock: Callable[[], float] = time.time,
    ) -> DecideFn:
        """A decision function for one policy, its constants bound once.

        ``decide(identity, cost=1, now=None)`` reads ``clock`` itself unless given ``now`` and
        returns the decision's fields as a plain tuple (``RawDecision``: building a tuple
        subclass such as ``Decision`` costs about as much as the decision). The limiter's
        in-process fast path: one dict read, one list write and the arithmetic between, no
        coroutine and no attribute lookups.
        """
        table = self.buckets.get(bucket)
        if table is None:
            table = self.buckets[bucket] = BoundedTable(self.bucket_budget, _bucket_recovered)
        block_data = self._block_data
        bucket_data = table.data
        deny = self._deny
        insert = table.insert

        def decide(identity: str, cost: int = 1, now: float | None = None) -> RawDecision:
            if now is None:
                now = clock()
            if block_data:
                block = block_data.get(identity)
                if block is not None:
                    if block.until > now:
                        left = block.until - now
                        return (_BLOCKED, 0, left, left)
                    self.blocks.discard(identity)
            state = bucket_data.get(identity)
            if state is not None:
                # state: [tat, penalty_until, strikes, strikes_expire]
                tat = state[0]
                if tat < now:
                    tat = now
                # (cost 1 spares an int * float, which the interpreter does not specialize)
                new_tat = tat + (interval if cost == 1 else cost * interval)
                allow_at = new_tat - tolerance
                if allow_at - now <= EPSILON and state[1] <= now:
                    state[0] = new_tat
                    # floor, as the Lua script does; the quotient is never negative here.
                    return (_ALLOWED, floor((now - allow_at) / interval + EPSILON), 0.0, new_tat - now)
                return deny(identity, table, state, tat, allow_at, now, escalation)
            # No state: a full bucket, admitted unless the cost exceeds the burst.
            new_tat = now + cost * interval
            allow_at = new_tat - tolerance
            if allow_at - now <= EPSILON:
                if not insert(identity, [new_tat, 0.0, 0.0, 0.0], now):
                    wait = table.retry_after(now)
                    return (_FULL, 0, wait, wait)
                return (_ALLOWED, floor((now - allow_at) / interval + EPSILON), 0.0, new_tat - now)
            return deny(identity, table, None, now, allow_at, now, escalation)

        return decide

    def _deny(
        self,
        identity: str,
        table: BoundedTable[list[float]],
        state: list[float] | None,
        tat: float,
        allow_at: float,
        now: float,
        escalation: Escalation,
    ) -> RawDecision:
        if state is None:
            state = [now, 0.0, 0.0, 0.0]
            if not table.insert(identity, state, now):
                wait = table.retry_after(now)
                return (_FULL, 0, wait, wait)
        if state[1] > now:
            wait = state[1] - now
        else:
            strikes = state[2] + 1 if state[3] > now else 1.0
            wait = penalty(int(strikes), allow_at - now, escalation.penalty_cap)
            state[1] = now + wait
            state[2] = strikes
            state[3] = now + escalation.strike_window
        if escalation.violation_threshold > 0:
            abuse = self._abuse(identity, now)
            if abuse is not None:
                if abuse[1] <= now:
                    abuse[0] = 0.0
                    abuse[1] = now + escalation.violation_window
                abuse[0] += 1
                if abuse[0] >= escalation.violation_threshold:
                    abuse[0] = 0.0
                    self._place(identity, now, now + escalation.block_seconds, "violations")
                    return (_NEWLY_BLOCKED, 0, escalation.block_seconds, escalation.block_seconds)
        return (_LIMITED, 0, wait, max(tat, state[1]) - now)

    def _abuse(self, identity: str, now: float) -> list[float] | None:
        abuse = self.abuse.data.get(identity)
        if abuse is None:
            abuse = [0.0, 0.0, 0.0, 0.0]
            if not self.abuse.insert(identity, abuse, now):
                return None  # a full table of live offenders: count nothing new rather than forget
        return abuse

    async def record_auth_failure(self, identity: str, now: float, escalation: Escalation) -> bool:
        if escalation.auth_failure_threshold <= 0:
            return False
        abuse = self._abuse(identity, now)
        if abuse is None:
            return False
        if abuse[3] <= now:
            abuse[2] = 0.0
            abuse[3] = now + escalation.auth_failure_window
        abuse[2] += 1
        if abuse[2] < escalation.auth_failure_threshold:
            return False
        abuse[2] = 0.0
        current = self.blocks.data.get(identity)
        self._place(identity, now, now + escalation.block_seconds, "auth_failures")
        return current is None or current.until <= now

    # -- one identity's state (the admin API) ---------------------------------------------------

    async def inspect(self, identity: str, buckets: Sequence[str], now: float) -> IdentityState:
        found: dict[str, BucketState] = {}
        for bucket in buckets:
            table = self.buckets.get(bucket)
            state = table.data.get(identity) if table is not None else None
            # [tat, penalty_until, strikes, strikes_expire]: full again once both have passed.
            if state is not None and max(state[0], state[1]) > now:
                found[bucket] = BucketState(state[0], state[1])
        abuse = self.abuse.data.get(identity)
        violations = int(abuse[0]) if abuse is not None and abuse[1] > now else 0
        failures = int(abuse[2]) if abuse is not None and abuse[3] > now else 0
        return IdentityState(found, violations, failures, await self.blocked(identity, now))

    async def reset(self, identity: str, buckets: Sequence[str]) -> None:
        for bucket in buckets:
            table = self.buckets.get(bucket)
            if table is not None:
                table.discard(identity)
        self.abuse.discard(identity)

    # -- blocks ------------------------------------------------------------------------------

    def _place(self, identity: str, now: float, until: float, reason: str) -> Block:
        current = self.blocks.data.get(identity)
        if current is not None and current.until > until:
            return current
        block = Block(identity=identity, until=until, reason=reason, created_at=now)
        if not self.blocks.insert(identity, block, now):
            # Every slot holds a live block: replace the one that ends soonest rather than drop this.
            soonest = min(self.blocks.data.values(), key=_block_recovered)
            self.blocks.discard(soonest.identity)
            self.blocks.insert(identity, block, now)
        return block

    async def block(self, identity: str, now: float, until: float, reason: str) -> Block:
        return self._place(identity, now, until, reason)

    async def unblock(self, identity: str) -> bool:
        return self.blocks.discard(identity) is not None

    async def blocked(self, identity: str, now: float) -> Block | None:
        block = self.blocks.data.get(identity)
        return block if block is not None and block.until > now else None

    async def blocked_any(self, identities: Sequence[str], now: float) -> Block | None:
        for identity in identities:
            block = await self.blocked(identity, now)
            if block is not None:
                return block
        return None

    async def list_blocks(self, now: float, limit: int, kind: str | None = None) -> list[Block]:
        live = sorted(
            (b for b in self.blocks.data.values() if b.until > now and (kind is None or b.kind == kind)),
            key=_block_recovered,
        )
        return live[:limit]

    # -- slots (leases and quotas) -----------------------------------------------------------

    def _live(self, key: str, now: float) -> dict[str, float]:
        members = self.slots.get(key)
        if members is None:
            return {}
        for member in [m for m, expiry in members.items() if expiry <= now]:
            del members[member]
        if not members:
            del self.slots[key]
        return members

    async def acquire_slots(
        self, keys: Sequence[str], limits: Sequence[int], member: str, now: float, expires_at: float
    ) -> SlotResult:
        if len(keys) != len(limits):
            raise ValueError("one limit per key")
        live = [self._live(key, now) for key in keys]
        counts = tuple(len(members) for members in live)
        held = all(member in members for members in live)
        if not held and any(
            member not in members and len(members) >= limit
            for members, limit in zip(live, limits, strict=True)
        ):
            return SlotResult(False, counts)
        for key in keys:
            self.slots.setdefault(key, {})[member] = expires_at
        return SlotResult(True, tuple(len(self.slots[key]) for key in keys))

    async def release_slots(self, keys: Sequence[str], member: str) -> None:
        for key in keys:
            members = self.slots.get(key)
            if members is not None:
                members.pop(member, None)
                if not members:
                    del self.slots[key]

    async def renew_slots(self, keys: Sequence[str], member: str, now: float, expires_at: float) -> bool:
        live = [self._live(key, now) for key in keys]
        if not all(member in members for members in live):
            return False
        for key in keys:
            self.slots[key][member] = expires_at
        return True

    async def count_slots(self, key: str, now: float) -> int:
        return len(self._live(key, now))

    # -- budgets -----------------------------------------------------------------------------

    def _budget(self, key: str, now: float) -> list[float] | None:
        # state: [used, expires_at, reserved]
        state = self.budgets.data.get(key)
        if state is not None and state[1] <= now:
            self.budgets.discard(key)
            return None
        return state

    async def reserve_budget(
        self, key: str, amount: int, limit: int, now: float, expires_at: float
    ) -> BudgetResult:
        state = self._budget(key, now)
        held = int(state[0] + state[2]) if state is not None else 0
        left = limit - held
        if amount > left:
            return BudgetResult(False, max(0, left))
        if amount == 0:
            return BudgetResult(True, left)
        if state is None:
            if not self.budgets.insert(key, [0.0, expires_at, float(amount)], now):
                return BudgetResult(False, 0)
        else:
            state[2] += amount
        return BudgetResult(True, left - amount)

    async def settle_budget(
        self,
        key: str,
        reserved: int,
        actual: int,
        limit: int,
        now: float,
        expires_at: float,
        riders: Sequence[Rider] = (),  # never run in process: their components call on their own
    ) -> BudgetSettlement:
        if expires_at <= now:
            return BudgetSettlement(0, 0, 0)
        state = self._budget(key, now)
        used = int(state[0]) if state is not None else 0
        rest = max(0, int(state[2]) - reserved) if state is not None else 0
        charge = actual
        if actual > reserved:
            charge = min(actual, max(reserved, limit + reserved - used - rest))
        used += charge
        if state is not None:
            state[0] = float(used)
            state[2] = float(rest)
        elif charge > 0 and not self.budgets.insert(key, [float(used), expires_at, 0.0], now):
            # A full table of live budgets: the charge cannot be recorded (as with a refused reserve).
            return BudgetSettlement(0, 0, 0)
        return BudgetSettlement(charge, used, rest)

    # -- admission -----------------------------------------------------------------------------

    async def admit(
        self,
        limits: Sequence[LimitCall],
        budget: BudgetCall | None,
        renewal: SlotRenewal | None,
        now: float,
        escalation: Escalation,
    ) -> Admission:
        # Plain calls with no suspension between them: the whole admission is one atomic step.
        decisions: list[Decision | None] = []
        refused: set[str] = set()
        for call in limits:
            if call.identity in refused:
                decisions.append(None)
                continue
            decision = self.decide_now(
                call.identity, call.bucket, now, call.interval, call.tolerance, call.cost, escalation
            )
            if not decision.allowed:
                refused.add(call.identity)
            decisions.append(decision)
        reserved: BudgetResult | None = None
        if budget is not None:
            if refused:
                reserved = BudgetResult(False, 0)
            else:
                reserved = await self.reserve_budget(
                    budget.key, budget.amount, budget.limit, now, budget.expires_at
                )
        renewed = None
        if renewal is not None:
            renewed = await self.renew_slots(renewal.keys, renewal.member, now, renewal.expires_at)
        return Admission(tuple(decisions), reserved, renewed)

    async def aclose(self) -> None:
        self.slots.clear()
