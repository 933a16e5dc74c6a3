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

Each call is bounded by ``timeout`` seconds (fail fast: the caller then applies its fail mode),
well below the client's own socket timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from bastion.ratelimit.algorithm import Decision, Outcome
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.storage.base import Block, BudgetResult, SlotResult
from bastion.ratelimit.storage.scripts import SCRIPTS

DEFAULT_PREFIX = "bastion:rl:"
DEFAULT_TIMEOUT = 0.5


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStorage:
    """Storage on a shared Redis: limits hold across every instance using it."""

    name = "redis"

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        owns_client: bool = False,
    ) -> None:
        self.redis = redis
        self.owns_client = owns_client
        self.prefix = prefix
        self.timeout = timeout
        self._sources = dict(SCRIPTS)
        self._shas = {name: _sha(source) for name, source in SCRIPTS.items()}
        self._index = f"{prefix}blocks"

    # -- plumbing ----------------------------------------------------------------------------

    async def load_scripts(self) -> None:
        """Register every script (optional: a missing script is loaded on first use)."""
        async with asyncio.timeout(self.timeout):
            for name, source in self._sources.items():
                self._shas[name] = await self.redis.script_load(source)

    async def _eval(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        async with asyncio.timeout(self.timeout):
            try:
                return await self.redis.evalsha(self._shas[name], len(keys), *keys, *args)
            except NoScriptError:
                # Redis restarted or failed over and forgot the script: register it and retry once.
                self._shas[name] = await self.redis.script_load(self._sources[name])
                return await self.redis.evalsha(self._shas[name], len(keys), *keys, *args)

    def _keys(self, identity: str) -> tuple[str, str]:
        tagged = f"{self.prefix}{{{identity}}}"
        return f"{tagged}:a", f"{tagged}:x"

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
        tagged = f"{self.prefix}{{{identity}}}"
        result = await self._eval(
            "decide",
            (f"{tagged}:b:{bucket}", f"{tagged}:a", f"{tagged}:x"),
            now,
            interval,
            tolerance,
            cost,
            escalation.strike_window,
            escalation.penalty_cap,
            escalation.violation_window,
            escalation.violation_threshold,
            escalation.block_seconds,
        )
        decision = Decision(int(result[0]), int(result[1]), float(result[2]), float(result[3]))
        if decision.outcome == Outcome.NEWLY_BLOCKED:
            await self._add_to_index(identity, now + escalation.block_seconds)
        return decision

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

    # -- blocks ------------------------------------------------------------------------------

    async def _add_to_index(self, identity: str, until: float) -> None:
        # The index of blocks lives outside the identity's slot, so it is a second command, made
        # only when a block is placed. Listing cross-checks each entry with the block itself.
        async with asyncio.timeout(self.timeout):
            await self.redis.zadd(self._index, {identity: until}, gt=True)

    async def block(self, identity: str, now: float, until: float, reason: str) -> Block:
        _, block_key = self._keys(identity)
        result = await self._eval("block", (block_key,), now, until, reason)
        block = Block(identity, float(result[0]), _text(result[1]), float(result[2]))
        await self._add_to_index(identity, block.until)
        return block

    async def unblock(self, identity: str) -> bool:
        _, block_key = self._keys(identity)
        async with asyncio.timeout(self.timeout):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(block_key)
                pipe.zrem(self._index, identity)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    async def blocked(self, identity: str, now: float) -> Block | None:
        _, block_key = self._keys(identity)
        async with asyncio.timeout(self.timeout):
            fields = await self.redis.hgetall(block_key)
        return self._block(identity, fields, now)

    @staticmethod
    def _block(identity: str, fields: dict[Any, Any], now: float) -> Block | None:
        values = {_text(k): _text(v) for k, v in fields.items()}
        if "until" not in values or float(values["until"]) <= now:
            return None
        return Block(identity, float(values["until"]), values.get("reason", ""), float(values["created"]))

    async def list_blocks(self, now: float, limit: int) -> list[Block]:
        async with asyncio.timeout(self.timeout):
            await self.redis.zremrangebyscore(self._index, "-inf", now)
            members = await self.redis.zrange(self._index, 0, max(0, limit - 1))
            identities = [_text(member) for member in members]
            async with self.redis.pipeline(transaction=False) as pipe:
                for identity in identities:
                    pipe.hgetall(self._keys(identity)[1])
                rows = await pipe.execute()
        blocks = [self._block(identity, row, now) for identity, row in zip(identities, rows, strict=True)]
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
        async with asyncio.timeout(self.timeout):
            return int(await self.redis.zcount(self.prefix + key, f"({now!r}", "+inf"))

    # -- budgets -----------------------------------------------------------------------------

    async def consume_budget(
        self, key: str, amount: int, limit: int, now: float, expires_at: float
    ) -> BudgetResult:
        result = await self._eval("consume_budget", (self.prefix + key,), amount, limit, now, expires_at)
        return BudgetResult(bool(int(result[0])), int(result[1]))

    async def aclose(self) -> None:
        """Close the client if this storage made it (the lifespan closes its own)."""
        if self.owns_client:
            await self.redis.aclose()
