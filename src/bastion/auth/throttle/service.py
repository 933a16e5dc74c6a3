# SPDX-License-Identifier: Apache-2.0
"""The password throttle: every check of a password (login, password change, re-authentication)
asks it first and reports the outcome after, so they all count toward the same limits.

See ``base`` for the three kinds of state. A refusal names its reason and the seconds to wait; the
caller answers 429 with Retry-After. Counters are keyed on hashes of the normalized email whether
or not the account exists, so no answer tells an unknown address from a known one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from bastion.addresses import DEFAULT_IPV6_PREFIX, counted_as
from bastion.auth.throttle.base import AttemptStore, Refusal, ThrottleRules, account_key, client_key
from bastion.auth.throttle.failover import FailoverAttemptStore
from bastion.auth.throttle.memory import DEFAULT_MAX_KEYS, MemoryAttemptStore
from bastion.auth.throttle.redis import RedisAttemptStore
from bastion.failover import FailMode, Failover
from bastion.redis_client import RedisClient


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    refusal: Refusal | None = None
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """What one failure changed: the client's wait for this account, a lock just placed."""

    wait: float
    locked_for: float
    client_blocked_for: float


def attempt_store_for(
    redis: RedisClient | None,
    *,
    max_keys: int = DEFAULT_MAX_KEYS,
    fail_mode: FailMode = "closed",
    retry_interval: float = 1.0,
) -> AttemptStore:
    """Redis when the app has a client (shared by every instance), a bounded memory table otherwise.

    The Redis store runs under ``fail_mode`` (``FailoverAttemptStore``) with the memory table as
    its fallback; pass a fail-fast client so an unreachable Redis costs a short timeout.
    """
    memory = MemoryAttemptStore(max_keys=max_keys)
    if redis is None:
        return memory
    failover: Failover[AttemptStore] = Failover(
        RedisAttemptStore(redis),
        memory,
        mode=fail_mode,
        component="auth_throttle",
        message="Sign-in is temporarily unavailable",
        retry_interval=retry_interval,
        # Checking passwords with this instance's counters only is worth an error in the log.
        level="error",
    )
    return FailoverAttemptStore(failover)


class PasswordThrottle:
    """The rules over an ``AttemptStore``, reading ``now`` from an injected clock."""

    def __init__(
        self,
        *,
        store: AttemptStore,
        rules: ThrottleRules,
        clock: Callable[[], float] = time.time,
        ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.ipv6_prefix = ipv6_prefix

    def _client(self, ip: str | None) -> str:
        # A client is what the rate limiter counts: an IPv4 address, an IPv6 client's prefix
        # network (RATE_LIMIT_IPV6_PREFIX), so one /64 is one client here too.
        return client_key(counted_as(ip, self.ipv6_prefix) if ip else None)

    async def check(self, email: str, ip: str | None) -> Verdict:
        """Whether the password for ``email`` may be checked for a request from ``ip`` now."""
        now = self.clock()
        client = self._client(ip)
        blocked = await self.store.client_wait(client, now)
        if blocked > 0:
            return Verdict(False, Refusal.CLIENT_BLOCKED, math.ceil(blocked))
        locked, delayed = await self.store.account_waits(account_key(email), client, now)
        if locked > 0:
            return Verdict(False, Refusal.ACCOUNT_LOCKED, math.ceil(locked))
        if delayed > 0:
            return Verdict(False, Refusal.THROTTLED, math.ceil(delayed))
        return Verdict(True)

    async def failure(self, email: str, ip: str | None) -> FailureOutcome:
        """Count a wrong password for ``email`` from ``ip``."""
        now = self.clock()
        client = self._client(ip)
        blocked = await self.store.client_failure(client, now, self.rules)
        counted = await self.store.account_failure(account_key(email), client, now, self.rules)
        return FailureOutcome(counted.pair_wait, counted.locked_for, blocked)

    async def success(self, email: str, ip: str | None) -> None:
        """A correct password: consecutive failures for the account and this client restart."""
        await self.store.account_success(account_key(email), self._client(ip))

    async def unlock(self, email: str, ip: str | None = None) -> bool:
        """Lift the account's lock (password reset, administrator); True when one was in force.

        With ``ip``, the delay of the client that proved ownership (the reset) ends too.
        """
        account = account_key(email)
        lifted = await self.store.unlock(account, self.clock())
        if ip is not None:
            await self.store.account_success(account, self._client(ip))
        return lifted
