# SPDX-License-Identifier: Apache-2.0
"""Redis storage: every decision is one EVALSHA of a Lua script, atomic on the server.

Scripts are registered once (their SHA1 is computed locally; the first EVALSHA that meets
NOSCRIPT, after a Redis restart or failover, loads the script and retries once).

Keys are Redis Cluster safe: everything a script touches for an identity carries the identity as
its hash tag (``bastion:rl:{ip:203.0.113.9}:b:login``), so one script never spans two slots. Slot
and budget keys arrive from their callers already tagged.

Time: scripts take ``now`` from the caller's injected clock instead of calling Redis TIME. That
keeps tests deterministic (time is moved, never slept) and a script a pure function of its inputs.
The price is that instances sharing Redis must keep their clocks in sync (NTP): a skew of ``s``
seconds between two instances lets at most ``s / interval`` extra requests through (or holds as
many back) at the moment an identity moves between them. TIME would remove that but make every
expiry untestable without sleeping; an NTP-synced fleet is the usual assumption of any
timestamp-based limiter.

Fail fast: a limiter call must not hold a request for the app client's 2 s socket timeout, and a
per-call ``asyncio.timeout`` costs microseconds, a noticeable share of a round trip. So the limiter gets its
own client (``fail_fast_client``: same server and credentials, a separate small pool) whose
connect and socket timeouts are RATE_LIMIT_REDIS_TIMEOUT_SECONDS; redis-py enforces them on every
read and write it makes anyway, at no extra cost. The caller then applies its fail mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from bastion.ratelimit.algorithm import Decision, Outcome
from bastion.ratelimit.escalation import Escalation
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
    ScriptCall,
    SlotRenewal,
    SlotResult,
)
from bastion.ratelimit.storage.scripts import SCRIPTS
from bastion.redis_client import RedisClient, fail_fast_client

__all__ = ["DEFAULT_PREFIX", "RedisStorage", "fail_fast_client"]

DEFAULT_PREFIX = "bastion:rl:"
_ALLOWED = int(Outcome.ALLOWED)
_RESET_MASK = (1 << 33) - 1


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_scripts(redis: RedisClient, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run ``calls`` in one round trip: a pipeline without MULTI, so Cluster-safe as long as each
    script keeps to one hash slot. Each reply is the script's, or the error it alone met; a
    script Redis had forgotten (NOSCRIPT: it did not run) is loaded and run once more by itself,
    never the others, which did run. A connection failure raises."""
    async with redis.pipeline(transaction=False) as pipe:
        for call in calls:
            pipe.evalsha(call.sha, len(call.keys), *call.keys, *call.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    for index, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            call = calls[index]
            await redis.script_load(call.source)
            replies[index] = await redis.evalsha(call.sha, len(call.keys), *call.keys, *call.args)
    return replies


def _decision_of(reply: Any) -> Decision:
    """A DECIDE reply as a ``Decision``."""
    if type(reply) is int:  # admitted: remaining << 33 | reset in milliseconds
        return Decision(_ALLOWED, reply >> 33, 0.0, (reply & _RESET_MASK) / 1000.0)
    parts = _text(reply).split(" ")
    return Decision(int(parts[0]), int(parts[1]), float(parts[2]), float(parts[3]))


class RedisStorage:
    """Storage on a shared Redis: limits hold across every instance using it."""

    name = "redis"

    def __init__(
        self,
        redis: RedisClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        owns_client: bool = False,
    ) -> None:
        self.redis = redis
        self.owns_client = owns_client
        self.prefix = prefix
        self._sources = dict(SCRIPTS)
        self._shas = {name: _sha(source) for name, source in SCRIPTS.items()}
        self._decide_sha = self._shas["decide"]
        self._index = f"{prefix}blocks"
        self._constants_cache: dict[tuple[float, float, int], tuple[Escalation, str]] = {}

    # -- plumbing ----------------------------------------------------------------------------

    async def load_scripts(self) -> None:
        """Register every script (optional: a missing script is loaded on first use)."""
        for name, source in self._sources.items():
            self._shas[name] = await self.redis.script_load(source)
        self._decide_sha = self._shas["decide"]

    async def _eval(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        try:
            return await self.redis.evalsha(self._shas[name], len(keys), *keys, *args)
        except NoScriptError:
            return await self._reload_and_eval(name, keys, *args)

    async def _reload_and_eval(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        # Redis restarted or failed over and forgot the script: register it and retry once.
        self._shas[name] = await self.redis.script_load(self._sources[name])
        if name == "decide":
            self._decide_sha = self._shas[name]
        return await self.redis.evalsha(self._shas[name], len(keys), *keys, *args)

    async def _eval_many(self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Several of this storage's scripts in one round trip (see ``run_scripts``)."""
        replies = await run_scripts(
            self.redis,
            [ScriptCall(self._sources[name], tuple(keys), tuple(args)) for name, keys, args in calls],
        )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _keys(self, identity: str) -> tuple[str, str]:
        tagged = f"{self.prefix}{{{identity}}}"
        return f"{tagged}:a", f"{tagged}:x"

    # -- rate decisions ----------------------------------------------------------------------

    def _constants(self, interval: float, tolerance: float, escalation: Escalation) -> str:
        """The policy's constant part of the packed argument, formatted once per policy."""
        # Keyed by identity, not value: hashing the Escalation dataclass costs a microsecond. The
        # entry keeps the object alive, so its id cannot be reused by another while cached.
        cache_key = (interval, tolerance, id(escalation))
        cached = self._constants_cache.get(cache_key)
        if cached is not None and cached[0] is escalation:
            return cached[1]
        if len(self._constants_cache) > 256:  # a handful of policies; never unbounded
            self._constants_cache.clear()
        constants = " ".join(
            repr(float(value))
            for value in (
                interval,
                tolerance,
                escalation.strike_window,
                escalation.penalty_cap,
                escalation.violation_window,
                escalation.violation_threshold,
                escalation.block_seconds,
            )
        )
        self._constants_cache[cache_key] = (escalation, constants)
        return constants

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
        tagged = f"{self.prefix}{{{identity}}}"
        packed = f"{now!r} {cost} {self._constants(interval, tolerance, escalation)}"
        try:
            reply = await self.redis.evalsha(
                self._decide_sha, 3, f"{tagged}:b:{bucket}", f"{tagged}:a", f"{tagged}:x", packed
            )
        except NoScriptError:
            keys = (f"{tagged}:b:{bucket}", f"{tagged}:a", f"{tagged}:x")
            reply = await self._reload_and_eval("decide", keys, packed)
        decision = _decision_of(reply)
        if decision.outcome == Outcome.NEWLY_BLOCKED:
            await self._add_to_index(identity, now + escalation.block_seconds)
        return decision

    async def admit(
        self,
        limits: Sequence[LimitCall],
        budget: BudgetCall | None,
        renewal: SlotRenewal | None,
        now: float,
        escalation: Escalation,
    ) -> Admission:
        # One ADMIT script per identity (one hash slot each), the budget in its owner's: the
        # budget key carries the owner identity as its hash tag.
        groups: dict[str, list[int]] = {}
        for index, call in enumerate(limits):
            groups.setdefault(call.identity, []).append(index)
        owner = budget.key.partition("{")[2].partition("}")[0] if budget is not None else None
        if owner is not None:
            groups.setdefault(owner, [])
        calls: list[tuple[str, Sequence[str], Sequence[Any]]] = []
        for identity, indexes in groups.items():
            tagged = f"{self.prefix}{{{identity}}}"
            keys = [f"{tagged}:b:{limits[i].bucket}" for i in indexes] + [f"{tagged}:a", f"{tagged}:x"]
            args: list[Any] = [len(indexes)]
            for i in indexes:
                call = limits[i]
                constants = self._constants(call.interval, call.tolerance, escalation)
                args.append(f"{now!r} {call.cost} {constants}")
            if budget is not None and identity == owner:
                keys.append(self.prefix + budget.key)
                args += [budget.amount, budget.limit, repr(now), repr(budget.expires_at)]
            calls.append(("admit", keys, args))
        if renewal is not None:
            keys = [self.prefix + key for key in renewal.keys]
            calls.append(("renew_slots", keys, [repr(now), repr(renewal.expires_at), renewal.member]))
        replies = await self._eval_many(calls)
        decisions: list[Decision | None] = [None] * len(limits)
        reserved: BudgetResult | None = None
        for (identity, indexes), reply in zip(groups.items(), replies, strict=False):
            for i, decided in zip(indexes, reply[1:], strict=False):
                decision = decisions[i] = _decision_of(decided)
                if decision.outcome == Outcome.NEWLY_BLOCKED:
                    await self._add_to_index(identity, now + escalation.block_seconds)
            if identity == owner:
                reserved = BudgetResult(bool(int(reply[0][0])), int(reply[0][1]))
        refused = any(d is not None and not d.allowed for d in decisions)
        if budget is not None and reserved is not None and reserved.allowed and refused:
            # Refused in another identity's slot after this one reserved: nothing is held.
            await self.settle_budget(budget.key, budget.amount, 0, budget.limit, now, budget.expires_at)
            reserved = BudgetResult(False, 0)
        renewed = bool(int(replies[-1])) if renewal is not None else None
        return Admission(tuple(decisions), reserved, renewed)

    async def record_auth_failure(self, identity: str, now: float, escalation: Escalation) -> bool:
        if escalation.auth_failure_threshold <= 0:
            return False
        placed = await self._eval(
            "auth_failure",
            self._keys(identity),
            now,
            escalation.auth_failure_window,
            escalation.auth_failure_threshold,
            escalation.block_seconds,
        )
        if int(placed):
            await self._add_to_index(identity, now + escalation.block_seconds)
            return True
        return False

    # -- one identity's state (the admin API) ---------------------------------------------------

    def _bucket_keys(self, identity: str, buckets: Sequence[str]) -> list[str]:
        tagged = f"{self.prefix}{{{identity}}}"
        return [f"{tagged}:b:{bucket}" for bucket in buckets]

    async def inspect(self, identity: str, buckets: Sequence[str], now: float) -> IdentityState:
        abuse_key, block_key = self._keys(identity)
        # One MULTI/EXEC: every key carries the identity's hash tag, so this is one slot and one
        # consistent snapshot. A GET per key rather than one MGET: a Cluster pipeline refuses
        # MGET (redis-py cannot route it), and inside MULTI the GETs cost no extra round trip.
        async with self.redis.pipeline(transaction=True) as pipe:
            for key in (*self._bucket_keys(identity, buckets), block_key):
                pipe.get(key)
            pipe.hmget(abuse_key, ["v", "ve", "af", "afe"])
            *values, abuse = await pipe.execute()
        found: dict[str, BucketState] = {}
        for bucket, value in zip(buckets, values[:-1], strict=True):
            if value is None:
                continue
            # "tat" or "tat penalty_until strikes strikes_expire", as the decide script writes it.
            parts = _text(value).split(" ")
            tat, penalty_until = float(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0
            if max(tat, penalty_until) > now:
                found[bucket] = BucketState(tat, penalty_until)
        v, ve, af, afe = (float(_text(item)) if item is not None else 0.0 for item in abuse)
        return IdentityState(
            found,
            int(v) if ve > now else 0,
            int(af) if afe > now else 0,
            self._block(identity, values[-1], now),
        )

    async def reset(self, identity: str, buckets: Sequence[str]) -> None:
        abuse_key, _ = self._keys(identity)
        # One DEL of keys in one slot: atomic, and the block key is not among them.
        await self.redis.delete(*self._bucket_keys(identity, buckets), abuse_key)

    # -- blocks ------------------------------------------------------------------------------

    async def _add_to_index(self, identity: str, until: float) -> None:
        # The index of blocks lives outside the identity's slot, so it is a second command, made
        # only when a block is placed. Listing cross-checks each entry with the block itself.
        # A second index per kind lets the blocklist read e.g. every network block without
        # wading through thousands of automatic per-address blocks.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._index, {identity: until}, gt=True)
            pipe.zadd(self._kind_index(identity.partition(":")[0]), {identity: until}, gt=True)
            await pipe.execute()

    def _kind_index(self, kind: str) -> str:
        return f"{self._index}:{kind}"

    @staticmethod
    def _block(identity: str, value: Any, now: float) -> Block | None:
        # "until created reason", as the scripts write it.
        if value is None:
            return None
        until, created, reason = _text(value).split(" ", 2)
        if float(until) <= now:
            return None
        return Block(identity, float(until), reason, float(created))

    async def block(self, identity: str, now: float, until: float, reason: str) -> Block:
        _, block_key = self._keys(identity)
        value = await self._eval("block", (block_key,), now, until, reason)
        block = self._block(identity, value, now)
        if block is None:  # only if ``until`` is not in the future: nothing to enforce
            return Block(identity, until, reason, now)
        await self._add_to_index(identity, block.until)
        return block

    async def unblock(self, identity: str) -> bool:
        _, block_key = self._keys(identity)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(block_key)
            pipe.zrem(self._index, identity)
            pipe.zrem(self._kind_index(identity.partition(":")[0]), identity)
            deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def blocked(self, identity: str, now: float) -> Block | None:
        _, block_key = self._keys(identity)
        return self._block(identity, await self.redis.get(block_key), now)

    async def blocked_any(self, identities: Sequence[str], now: float) -> Block | None:
        # One GET per identity in one pipeline: each in its own identity's slot (Cluster-safe).
        async with self.redis.pipeline(transaction=False) as pipe:
            for identity in identities:
                pipe.get(self._keys(identity)[1])
            values = await pipe.execute()
        for identity, value in zip(identities, values, strict=True):
            block = self._block(identity, value, now)
            if block is not None:
                return block
        return None

    async def list_blocks(self, now: float, limit: int, kind: str | None = None) -> list[Block]:
        index = self._index if kind is None else self._kind_index(kind)
        await self.redis.zremrangebyscore(index, "-inf", now)
        members = await self.redis.zrange(index, 0, max(0, limit - 1))
        identities = [_text(member) for member in members]
        if not identities:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for identity in identities:
                pipe.get(self._keys(identity)[1])
            values = await pipe.execute()
        blocks = [
            self._block(identity, value, now) for identity, value in zip(identities, values, strict=True)
        ]
        return [block for block in blocks if block is not None]

    # -- slots (leases and quotas) -----------------------------------------------------------

    async def acquire_slots(
        self, keys: Sequence[str], limits: Sequence[int], member: str, now: float, expires_at: float
    ) -> SlotResult:
        if len(keys) != len(limits):
            raise ValueError("one limit per key")
        result = await self._eval(
            "acquire_slots", [self.prefix + key for key in keys], now, expires_at, member, *limits
        )
        return SlotResult(bool(int(result[0])), tuple(int(count) for count in result[1:]))

    async def release_slots(self, keys: Sequence[str], member: str) -> None:
        await self._eval("release_slots", [self.prefix + key for key in keys], member)

    async def renew_slots(self, keys: Sequence[str], member: str, now: float, expires_at: float) -> bool:
        renewed = await self._eval(
            "renew_slots", [self.prefix + key for key in keys], now, expires_at, member
        )
        return bool(int(renewed))

    async def count_slots(self, key: str, now: float) -> int:
        return int(await self.redis.zcount(self.prefix + key, f"({now!r}", "+inf"))

    # -- budgets -----------------------------------------------------------------------------

    async def reserve_budget(
        self, key: str, amount: int, limit: int, now: float, expires_at: float
    ) -> BudgetResult:
        result = await self._eval("reserve_budget", (self.prefix + key,), amount, limit, now, expires_at)
        return BudgetResult(bool(int(result[0])), int(result[1]))

    async def settle_budget(
        self,
        key: str,
        reserved: int,
        actual: int,
        limit: int,
        now: float,
        expires_at: float,
        riders: Sequence[Rider] = (),
    ) -> BudgetSettlement:
        """``riders``: other components' scripts, sent in the same round trip (see ``Rider``)."""
        args = (reserved, actual, limit, now, expires_at)
        if not riders:
            result = await self._eval("settle_budget", (self.prefix + key,), *args)
            return BudgetSettlement(int(result[0]), int(result[1]), int(result[2]))
        calls = [ScriptCall(self._sources["settle_budget"], (self.prefix + key,), args)]
        replies = await run_scripts(self.redis, calls + [rider.call for rider in riders])
        for rider, reply in zip(riders, replies[1:], strict=True):
            rider.ran = True
            rider.done(reply)
        result = replies[0]
        if isinstance(result, Exception):
            raise result
        return BudgetSettlement(int(result[0]), int(result[1]), int(result[2]))

    async def aclose(self) -> None:
        """Close the client if this storage made it (the lifespan closes its own)."""
        if self.owns_client:
            await self.redis.aclose()
