# SPDX-License-Identifier: Apache-2.0
"""The shared attempt store: one Lua script per step, every key expiring on its own.

An account's keys (its failures, clients, lock level, lock and every pair) share the hash tag
``{acct:...}`` and a client's keys ``{ip:...}``, so no script spans two Cluster slots. Times are
absolute values from the caller's clock; key expiry only cleans up.
"""

from __future__ import annotations

from bastion.auth.throttle.base import LEVEL_TTL_SECONDS, MAX_LOCK_SECONDS, Failure, ThrottleRules, Waits
from bastion.redis_client import RedisClient

KEY_PREFIX = "bastion:auth:login:"

_WAITS = """
local now = tonumber(ARGV[1])
local lock = tonumber(redis.call('GET', KEYS[1]) or '0')
local pair = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
return {tostring(math.max(lock - now, 0)), tostring(math.max(pair - now, 0))}
"""

# KEYS: pair, failures, clients, level, lock. ARGV: now, client, window, delay_after, delay,
# delay_max, account_window, lock_failures, lock_clients, lock_seconds, level_ttl, max_lock.
_ACCOUNT_FAILURE = """
local now = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'exp') or '0') <= now then redis.call('DEL', KEYS[1]) end
local pn = redis.call('HINCRBY', KEYS[1], 'n', 1)
local wait = 0
local after = tonumber(ARGV[4])
if pn >= after then
  wait = math.min(tonumber(ARGV[5]) * 2 ^ math.min(pn - after, 62), tonumber(ARGV[6]))
end
local keep = wait + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'until', tostring(now + wait), 'exp', tostring(now + keep))
redis.call('PEXPIRE', KEYS[1], math.ceil(keep * 1000))
local account_ms = math.ceil(tonumber(ARGV[7]) * 1000)
local n = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], account_ms)
local needed = tonumber(ARGV[9])
if redis.call('SCARD', KEYS[3]) < needed then redis.call('SADD', KEYS[3], ARGV[2]) end
redis.call('PEXPIRE', KEYS[3], account_ms)
local locked = 0
if n >= tonumber(ARGV[8]) and redis.call('SCARD', KEYS[3]) >= needed then
  local level = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[11]) * 1000))
  locked = math.min(tonumber(ARGV[10]) * 2 ^ math.min(level - 1, 62), tonumber(ARGV[12]))
  redis.call('SET', KEYS[5], tostring(now + locked), 'PX', math.ceil(locked * 1000))
  redis.call('DEL', KEYS[2], KEYS[3])
end
return {tostring(wait), tostring(locked)}
"""

_UNLOCK = """
local lock = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if lock > tonumber(ARGV[1]) then return 1 end
return 0
"""

_CLIENT_FAILURE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000)) end
if n >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], tostring(now + window), 'PX', math.ceil(window * 1000))
  redis.call('DEL', KEYS[1])
  return tostring(window)
end
return '0'
"""


def _tag(key: str) -> str:
    return f"{KEY_PREFIX}{{{key}}}"


class RedisAttemptStore:
    """Shared by every instance; one atomic round trip per method."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._waits = redis.register_script(_WAITS)
        self._failure = redis.register_script(_ACCOUNT_FAILURE)
        self._unlock = redis.register_script(_UNLOCK)
        self._client_failure = redis.register_script(_CLIENT_FAILURE)

    async def account_waits(self, account: str, client: str, now: float) -> Waits:
        tag = _tag(account)
        locked, delayed = await self._waits(keys=[f"{tag}:lock", f"{tag}:p:{client}"], args=[repr(now)])
        return Waits(float(locked), float(delayed))

    async def account_failure(self, account: str, client: str, now: float, rules: ThrottleRules) -> Failure:
        tag = _tag(account)
        keys = [f"{tag}:p:{client}", f"{tag}:n", f"{tag}:c", f"{tag}:level", f"{tag}:lock"]
        args: list[str | float | int] = [
            repr(now),
            client,
            rules.window_seconds,
            rules.delay_after,
            rules.delay_seconds,
            rules.delay_max_seconds,
            rules.account_window_seconds,
            rules.lock_failures,
            rules.lock_clients,
            rules.lock_seconds,
            LEVEL_TTL_SECONDS,
            MAX_LOCK_SECONDS,
        ]
        wait, locked = await self._failure(keys=keys, args=args)
        return Failure(float(wait), float(locked))

    async def account_success(self, account: str, client: str) -> None:
        tag = _tag(account)
        await self._redis.delete(f"{tag}:p:{client}", f"{tag}:n", f"{tag}:c")

    async def unlock(self, account: str, now: float) -> bool:
        tag = _tag(account)
        keys = [f"{tag}:lock", f"{tag}:level", f"{tag}:n", f"{tag}:c"]
        return bool(int(await self._unlock(keys=keys, args=[repr(now)])))

    async def client_wait(self, client: str, now: float) -> float:
        until = await self._redis.get(f"{_tag(client)}:lock")
        return max(0.0, float(until) - now) if until is not None else 0.0

    async def client_failure(self, client: str, now: float, rules: ThrottleRules) -> float:
        tag = _tag(client)
        keys = [f"{tag}:n", f"{tag}:lock"]
        locked = await self._client_failure(
            keys=keys, args=[repr(now), rules.window_seconds, rules.client_max_failures]
        )
        return float(locked)
