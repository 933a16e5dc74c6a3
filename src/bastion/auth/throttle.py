# SPDX-License-Identifier: Apache-2.0
"""Login brute-force protection: failure counters per account and per client address, lockouts.

After LOGIN_MAX_FAILURES failures within LOGIN_FAILURE_WINDOW_MINUTES an account is locked for
LOGIN_LOCKOUT_MINUTES, doubling with each further lockout within a day (capped at a day). Counters
are keyed on a hash of the normalized email whether or not the account exists, so a lockout
reveals nothing about existence. A client address with LOGIN_IP_MAX_FAILURES failures is refused
(429) for the rest of the window. Storage: Redis (atomic Lua, shared) or memory.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

KEY_PREFIX = "bastion:auth:login:"
LEVEL_TTL_SECONDS = 24 * 3600
MAX_LOCK_SECONDS = 24 * 3600


class AttemptStore(Protocol):
    async def add_failure(self, key: str, *, window_seconds: int) -> int:
        """Count one failure; the count of failures in the window that began with the first one."""

    async def clear(self, key: str) -> None:
        """Forget the failures counted for ``key``."""

    async def lock(self, key: str, *, base_seconds: int) -> int:
        """Lock ``key``; each lockout within a day doubles the time. Returns the seconds locked."""

    async def locked_for(self, key: str) -> float:
        """Seconds ``key`` stays locked (0 when it is not)."""


class MemoryAttemptStore:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}
        self._levels: dict[str, tuple[int, float]] = {}
        self._locks: dict[str, float] = {}

    def _live(self, table: dict[str, tuple[int, float]], key: str) -> int:
        entry = table.get(key)
        if entry is None or entry[1] <= self._clock():
            table.pop(key, None)
            return 0
        return entry[0]

    async def add_failure(self, key: str, *, window_seconds: int) -> int:
        count = self._live(self._counts, key)
        expiry = self._counts[key][1] if count else self._clock() + window_seconds
        self._counts[key] = (count + 1, expiry)
        return int(count + 1)

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    async def lock(self, key: str, *, base_seconds: int) -> int:
        level = self._live(self._levels, key) + 1
        self._levels[key] = (level, self._clock() + LEVEL_TTL_SECONDS)
        seconds = int(min(base_seconds * 2 ** (level - 1), MAX_LOCK_SECONDS))
        self._locks[key] = self._clock() + seconds
        self._counts.pop(key, None)
        return seconds

    async def locked_for(self, key: str) -> float:
        until = self._locks.get(key)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._locks[key]
            return 0.0
        return remaining


_ADD_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

_LOCK = """
local level = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local seconds = math.min(tonumber(ARGV[1]) * (2 ^ (level - 1)), tonumber(ARGV[3]))
redis.call('SET', KEYS[3], '1', 'EX', math.floor(seconds))
redis.call('DEL', KEYS[1])
return math.floor(seconds)
"""


class RedisAttemptStore:
    """One atomic round trip per decision; every key expires on its own."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._add = redis.register_script(_ADD_FAILURE)
        self._lock = redis.register_script(_LOCK)

    async def add_failure(self, key: str, *, window_seconds: int) -> int:
        return int(await self._add(keys=[f"{KEY_PREFIX}{{{key}}}:n"], args=[window_seconds]))

    async def clear(self, key: str) -> None:
        await self._redis.delete(f"{KEY_PREFIX}{{{key}}}:n")

    async def lock(self, key: str, *, base_seconds: int) -> int:
        # One hash tag per key: the three keys share a Cluster slot, so the script stays atomic.
        keys = [f"{KEY_PREFIX}{{{key}}}:{suffix}" for suffix in ("n", "level", "lock")]
        return int(await self._lock(keys=keys, args=[base_seconds, LEVEL_TTL_SECONDS, MAX_LOCK_SECONDS]))

    async def locked_for(self, key: str) -> float:
        ttl = int(await self._redis.pttl(f"{KEY_PREFIX}{{{key}}}:lock"))
        return ttl / 1000 if ttl > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    ip_blocked: bool = False
    retry_after: float = 0.0


def account_key(email: str) -> str:
    return "acct:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def address_key(ip: str | None) -> str:
    return "ip:" + hashlib.sha256((ip or "unknown").encode()).hexdigest()[:32]


class LoginThrottle:
    """The rules over an ``AttemptStore``."""

    def __init__(
        self,
        *,
        store: AttemptStore,
        max_failures: int,
        ip_max_failures: int,
        window_seconds: int,
        lockout_seconds: int,
    ) -> None:
        self.store = store
        self.max_failures = max_failures
        self.ip_max_failures = ip_max_failures
        self.window_seconds = window_seconds
        self.lockout_seconds = lockout_seconds

    async def check(self, email: str, ip: str | None) -> Verdict:
        """Whether a login attempt may be evaluated at all."""
        ip_locked = await self.store.locked_for(address_key(ip))
        if ip_locked > 0:
            return Verdict(allowed=False, ip_blocked=True, retry_after=math.ceil(ip_locked))
        locked = await self.store.locked_for(account_key(email))
        if locked > 0:
            return Verdict(allowed=False, retry_after=math.ceil(locked))
        return Verdict(allowed=True)

    async def failure(self, email: str, ip: str | None) -> int:
        """Record a failure; returns the seconds the account was just locked for (0 if not)."""
        ip_count = await self.store.add_failure(address_key(ip), window_seconds=self.window_seconds)
        if ip_count >= self.ip_max_failures:
            await self.store.lock(address_key(ip), base_seconds=self.window_seconds)
        count = await self.store.add_failure(account_key(email), window_seconds=self.window_seconds)
        if count >= self.max_failures:
            return await self.store.lock(account_key(email), base_seconds=self.lockout_seconds)
        return 0

    async def success(self, email: str) -> None:
        await self.store.clear(account_key(email))
