# SPDX-License-Identifier: Apache-2.0
"""The detectors' shared state: event counts per window, and each key's token usage per hour.

Both live in Redis when REDIS_URL is set, so every instance adds to the same counts, and in
process otherwise. Each observation is one atomic call (one round trip):

* window counts reuse the rate limiter's budget primitive (``settle_budget``: charge 1, read the
  total, reset at the window's end), on its memory and Redis storages alike;
* token usage has a script of its own, which folds a finished hour into the key's baseline, adds
  the tokens and decides, marking the hour so that it fires once.

Redis calls go through the fail-fast client (RATE_LIMIT_REDIS_TIMEOUT_SECONDS) and a ``Failover``
that is always open: detection never refuses a request, so while Redis is unreachable the counts
go on in process (logged and counted) and go back to Redis when it answers again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bastion.alerts.rules import TokenRule
from bastion.failover import Failover
from bastion.ratelimit.storage.base import LimiterStorage, ScriptCall
from bastion.ratelimit.storage.memory import MemoryStorage
from bastion.ratelimit.storage.redis import RedisStorage
from bastion.redis_client import RedisClient

PREFIX = "bastion:alerts:"
# The budget primitive caps what it charges at a limit; counts never come near this one.
COUNT_CEILING = 2**52
USAGE_TTL_SECONDS = 30 * 24 * 3600  # a key unused this long starts its baseline afresh
MAX_USAGE_KEYS = 100_000  # in-process usage states kept (memory bound)


@dataclass(frozen=True, slots=True)
class Usage:
    """A key's hour after one observation: whether it just crossed, and what it was compared with."""

    fire: bool
    used: int
    baseline: float
    hours: int  # active hours folded into the baseline


def usage_step(state: list[float], hour: int, tokens: int, rule: TokenRule) -> tuple[list[float], Usage]:
    """The token-usage decision on ``state`` = [hour, used, baseline, hours, alerted_hour].

    The same steps as ``USAGE_SCRIPT``. Hours without usage are skipped, not folded in as zeros: the
    baseline is what the key spends in an hour it is used, so a key used once a day is compared
    with its own busy hours. A key with no finished active hour yet has no baseline and never fires.
    """
    current, used, baseline, hours, alerted = state
    if hour > current:
        if used > 0:
            baseline = used if hours == 0 else rule.weight * used + (1 - rule.weight) * baseline
            hours += 1
        current, used = hour, 0
    used += tokens
    fire = hours > 0 and used >= rule.min_tokens and used > rule.factor * baseline and alerted != current
    if fire:
        alerted = current
    return [current, used, baseline, hours, alerted], Usage(fire, int(used), baseline, int(hours))


USAGE_SCRIPT = """
local s = redis.call('HMGET', KEYS[1], 'hour', 'used', 'baseline', 'hours', 'alerted')
local hour = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local factor = tonumber(ARGV[3])
local min_tokens = tonumber(ARGV[4])
local weight = tonumber(ARGV[5])
local current = tonumber(s[1]) or hour
local used = tonumber(s[2]) or 0
local baseline = tonumber(s[3]) or 0
local hours = tonumber(s[4]) or 0
local alerted = tonumber(s[5]) or -1
if hour > current then
  if used > 0 then
    if hours == 0 then baseline = used else baseline = weight * used + (1 - weight) * baseline end
    hours = hours + 1
  end
  current = hour
  used = 0
end
used = used + tokens
local fire = 0
if hours > 0 and used >= min_tokens and used > factor * baseline and alerted ~= current then
  fire = 1
  alerted = current
end
redis.call('HSET', KEYS[1], 'hour', current, 'used', used, 'baseline', string.format('%.17g', baseline),
  'hours', hours, 'alerted', alerted)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {fire, used, string.format('%.17g', baseline), hours}
"""


class AlertStore(Protocol):
    """Atomic primitives of the detectors' state."""

    name: str

    async def count(self, key: str, now: float, resets_at: float) -> int:
        """Add one to ``key`` (which starts afresh at ``resets_at``) and return its count."""
        ...

    async def usage(self, subject: str, hour: int, tokens: int, rule: TokenRule) -> Usage:
        """Add ``tokens`` to ``subject``'s ``hour`` and decide against its baseline."""
        ...


class _Counts:
    """Window counts on a limiter storage's budget primitive."""

    def __init__(self, storage: LimiterStorage) -> None:
        self.storage = storage
        self.name = storage.name

    async def count(self, key: str, now: float, resets_at: float) -> int:
        settled = await self.storage.settle_budget(key, 0, 1, COUNT_CEILING, now, resets_at)
        return settled.used


class MemoryAlertStore(_Counts):
    def __init__(self) -> None:
        super().__init__(MemoryStorage())
        self.states: dict[str, list[float]] = {}

    async def usage(self, subject: str, hour: int, tokens: int, rule: TokenRule) -> Usage:
        state = self.states.pop(subject, None) or [hour, 0, 0.0, 0, -1]
        if len(self.states) >= MAX_USAGE_KEYS:
            # Forget the least recently used key (dicts keep insertion order; popped and put back
            # on every use, the first one is the stalest).
            self.states.pop(next(iter(self.states)))
        self.states[subject], usage = usage_step(state, hour, tokens, rule)
        return usage


class RedisAlertStore(_Counts):
    def __init__(self, redis: RedisClient) -> None:
        super().__init__(RedisStorage(redis, prefix=PREFIX))
        self.redis = redis
        # redis-py's Script: EVALSHA, loading the script again after NOSCRIPT (a Redis restart).
        self._usage = redis.register_script(USAGE_SCRIPT)

    async def usage(self, subject: str, hour: int, tokens: int, rule: TokenRule) -> Usage:
        call = self.usage_call(subject, hour, tokens, rule)
        return self.usage_of(await self._usage(keys=call.keys, args=call.args))

    @staticmethod
    def usage_call(subject: str, hour: int, tokens: int, rule: TokenRule) -> ScriptCall:
        """``usage`` as a script call, to send with another component's (a ``Rider``)."""
        key = f"{PREFIX}{{{subject}}}:tokens"
        args = (hour, tokens, rule.factor, rule.min_tokens, rule.weight, USAGE_TTL_SECONDS)
        return ScriptCall(USAGE_SCRIPT, (key,), args)

    @staticmethod
    def usage_of(reply: Any) -> Usage:
        fire, used, baseline, hours = reply
        text = baseline.decode() if isinstance(baseline, bytes) else str(baseline)
        return Usage(bool(int(fire)), int(used), float(text), int(hours))


class Counters:
    """The detectors' state: shared in Redis when there is one, with an in-process fallback."""

    def __init__(self, redis: RedisClient | None) -> None:
        self.fallback = MemoryAlertStore()
        primary: AlertStore = RedisAlertStore(redis) if redis is not None else self.fallback
        self.failover: Failover[AlertStore] = Failover(
            primary,
            self.fallback,
            mode="open",  # detection never refuses a request
            component="alerts",
            message="Anomaly counters are unavailable",
            store_name=primary.name,
        )
        self.stats = self.failover.stats

    @property
    def shared(self) -> bool:
        return self.failover.primary is not self.fallback

    def usage_call(self, subject: str, now: float, tokens: int, rule: TokenRule) -> ScriptCall | None:
        """``usage`` as a script to send with another call, or None when the counters are not in
        Redis right now (in process, or failing over): then call ``usage``."""
        primary = self.failover.primary
        if not isinstance(primary, RedisAlertStore) or self.failover.current() is not primary:
            return None
        return primary.usage_call(subject, int(now // 3600), tokens, rule)

    async def count(self, key: str, now: float, window: int) -> int:
        """Count one event in the fixed window of ``window`` seconds that holds ``now``."""
        index = int(now // window)
        tagged = f"{{{key}}}:{window}:{index}"
        resets_at = float((index + 1) * window)
        return await self.failover.run(lambda store: store.count(tagged, now, resets_at))

    async def usage(self, subject: str, now: float, tokens: int, rule: TokenRule) -> Usage:
        hour = int(now // 3600)
        return await self.failover.run(lambda store: store.usage(subject, hour, tokens, rule))
