# SPDX-License-Identifier: Apache-2.0
"""Where breaker state lives: in the process, or in Redis so every instance sees one breaker.

The Redis store runs the same transitions as ``bastion.llm.breaker`` in Lua, one atomic round trip
per call; the contract tests run both stores through the same scenarios.

When Redis cannot answer, ``FailoverBreakerStore`` runs the breaker in process (through
``bastion.failover``, logged and counted) whatever RATE_LIMIT_FAIL_MODE says. The breaker protects
the model provider from Bastion, not Bastion from its callers: the model call itself needs no
Redis, and refusing it because breaker state is unreachable would take chat down with Redis while
guarding nothing. Each instance's own breaker still opens on the failures it sees, so a failing
provider is still shed; instances merely stop agreeing until Redis returns, and then they share
one breaker again without a restart.
"""

from __future__ import annotations

from typing import Protocol

from bastion.failover import Failover
from bastion.llm.breaker import (
    BreakerConfig,
    Decision,
    Snapshot,
    State,
    acquire,
    record_failure,
    record_success,
)
from bastion.redis_client import RedisClient


class BreakerStore(Protocol):
    async def acquire(self, name: str, config: BreakerConfig, now: float) -> Decision: ...

    async def success(self, name: str, config: BreakerConfig, now: float) -> None: ...

    async def failure(self, name: str, config: BreakerConfig, now: float) -> None: ...

    async def state(self, name: str) -> State: ...


class MemoryBreakerStore:
    """Per-process breakers. The event loop runs each method without interruption: no lock needed."""

    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}

    async def acquire(self, name: str, config: BreakerConfig, now: float) -> Decision:
        decision, self._snapshots[name] = acquire(self._snapshots.get(name, Snapshot()), config, now)
        return decision

    async def success(self, name: str, config: BreakerConfig, now: float) -> None:
        self._snapshots[name] = record_success(self._snapshots.get(name, Snapshot()), config, now)

    async def failure(self, name: str, config: BreakerConfig, now: float) -> None:
        self._snapshots[name] = record_failure(self._snapshots.get(name, Snapshot()), config, now)

    async def state(self, name: str) -> State:
        return self._snapshots.get(name, Snapshot()).state


# KEYS[1] = breaker hash. ARGV: now, threshold, recovery seconds, half-open probes, ttl ms.
# Returns {allowed, retry_after}, plus a third element 1 when no state is recorded at all (closed,
# no failures counted): the one answer an instance may reuse for a moment.
_ACQUIRE = """
local s = redis.call('HMGET', KEYS[1], 'state', 'failures', 'since', 'probes')
if not s[1] then return {1, '0', 1} end
local state = s[1]
if state == 'closed' then return {1, '0', 0} end
local now = tonumber(ARGV[1])
local recovery = tonumber(ARGV[3])
local since = tonumber(s[3]) or 0
local probes = tonumber(s[4]) or 0
local waited = now - since
if state == 'open' then
  if waited < recovery then return {0, tostring(recovery - waited)} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'since', ARGV[1], 'probes', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, '0'}
end
if waited >= recovery then
  redis.call('HSET', KEYS[1], 'since', ARGV[1], 'probes', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {1, '0'}
end
if probes < tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[1], 'probes', 1)
  return {1, '0'}
end
return {0, tostring(recovery - waited)}
"""

_FAILURE = """
local s = redis.call('HMGET', KEYS[1], 'state', 'failures')
local state = s[1] or 'closed'
local failures = (tonumber(s[2]) or 0) + 1
if state == 'open' then return 0 end
if state == 'half_open' or failures >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'failures', failures, 'since', ARGV[1], 'probes', 0)
else
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', failures)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisBreakerStore:
    """Breakers shared by every instance through Redis.

    A clean reading (closed, no failure counted) is reused for ``fresh_for`` seconds of the
    callers' clock, and a success after a clean reading has nothing to reset: while the provider
    is healthy, a breaker costs an instance one round trip per ``fresh_for``, not two per call.
    Any other state (failures counted, open, half-open) is read on every call, so probes stay
    counted across instances; a breaker another instance opened is seen within ``fresh_for``, and
    each call that meanwhile fails here is recorded as ever (and ends the reuse at once).
    """

    def __init__(
        self, redis: RedisClient, *, prefix: str = "bastion:breaker", fresh_for: float = 0.25
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.fresh_for = fresh_for
        self._acquire = redis.register_script(_ACQUIRE)
        self._failure = redis.register_script(_FAILURE)
        self._clean_until: dict[str, float] = {}

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{{{name}}}"

    @staticmethod
    def _args(config: BreakerConfig, now: float) -> list[str | int | float]:
        # State outlives the recovery period long enough to matter, then expires on its own.
        ttl_ms = int(max(config.recovery_seconds * 10, 600) * 1000)
        return [
            repr(now),
            config.failure_threshold,
            repr(config.recovery_seconds),
            config.half_open_probes,
            ttl_ms,
        ]

    async def acquire(self, name: str, config: BreakerConfig, now: float) -> Decision:
        clean_until = self._clean_until.get(name)
        if clean_until is not None and now < clean_until:
            return Decision(True, 0.0)
        reply = await self._acquire(keys=[self._key(name)], args=self._args(config, now))
        allowed, retry_after = reply[0], reply[1]
        if len(reply) > 2 and int(reply[2]):
            self._clean_until[name] = now + self.fresh_for
        else:
            self._clean_until.pop(name, None)
        return Decision(bool(allowed), float(retry_after))

    async def success(self, name: str, config: BreakerConfig, now: float) -> None:
        if name in self._clean_until:
            return  # the reading was clean: no failure or probe to clear
        await self.redis.delete(self._key(name))

    async def failure(self, name: str, config: BreakerConfig, now: float) -> None:
        self._clean_until.pop(name, None)
        await self._failure(keys=[self._key(name)], args=self._args(config, now))

    async def state(self, name: str) -> State:
        raw = await self.redis.hget(self._key(name), "state")
        return State(raw.decode() if isinstance(raw, bytes) else raw) if raw else State.CLOSED


class FailoverBreakerStore:
    """A ``BreakerStore`` on Redis that degrades to an in-process breaker (see the module notes)."""

    def __init__(self, failover: Failover[BreakerStore]) -> None:
        self.failover = failover

    @classmethod
    def over(cls, redis: RedisClient, *, retry_interval: float = 1.0) -> FailoverBreakerStore:
        """Redis state with a ``MemoryBreakerStore`` fallback, always open (never a 503)."""
        failover: Failover[BreakerStore] = Failover(
            RedisBreakerStore(redis),
            MemoryBreakerStore(),
            mode="open",
            component="llm_breaker",
            message="The model provider is temporarily unavailable",
            retry_interval=retry_interval,
        )
        return cls(failover)

    async def acquire(self, name: str, config: BreakerConfig, now: float) -> Decision:
        return await self.failover.run(lambda s: s.acquire(name, config, now))

    async def success(self, name: str, config: BreakerConfig, now: float) -> None:
        await self.failover.run(lambda s: s.success(name, config, now))

    async def failure(self, name: str, config: BreakerConfig, now: float) -> None:
        await self.failover.run(lambda s: s.failure(name, config, now))

    async def state(self, name: str) -> State:
        return await self.failover.run(lambda s: s.state(name))
