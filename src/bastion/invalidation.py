# SPDX-License-Identifier: Apache-2.0
"""Version counters that tell every instance when a shared, cached fact changed.

A revocation or a network block is rare; checking it against Redis on every request is not
free. Instead each cache remembers the version of what it holds, and a ``Watched`` counter reads
the shared version at most once per ``interval`` seconds (one GET). When the version moved, the
cache is dropped. An instance that made the change bumps the counter and drops its own cache at
once; the others follow within ``interval`` (0.25 s by default, well inside the one-second
promise). Memory counters serve single-process deployments.

A Redis counter runs under the one fail mode (``bastion.failover``, ``FailoverVersionCounter``).
Closed (production): a cache that cannot learn whether what it holds was revoked is not trusted;
the caller gets ``ServiceUnavailable`` (503). Open (development): an in-process counter answers
(its value differs from the shared one, so the cache is dropped once and re-read from the
database), changes made elsewhere meanwhile are missed, the failure is logged and counted; when
Redis answers again its version differs from the one seen and the cache is dropped once more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from bastion.failover import FailMode, Failover
from bastion.redis_client import RedisClient

DEFAULT_PREFIX = "bastion:version:"


class VersionCounter(Protocol):
    """A shared integer that only grows."""

    async def get(self) -> int:
        """The current version."""
        ...

    async def bump(self) -> int:
        """Move the version on; returns the new value."""
        ...


class MemoryVersionCounter:
    def __init__(self) -> None:
        self.value = 0

    async def get(self) -> int:
        return self.value

    async def bump(self) -> int:
        self.value += 1
        return self.value


class RedisVersionCounter:
    def __init__(self, redis: RedisClient, name: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.redis = redis
        self.key = f"{prefix}{name}"

    async def get(self) -> int:
        value = await self.redis.get(self.key)
        return int(value) if value is not None else 0

    async def bump(self) -> int:
        return int(await self.redis.incr(self.key))


class FailoverVersionCounter:
    """A ``VersionCounter`` on ``failover``'s current counter."""

    def __init__(self, failover: Failover[VersionCounter]) -> None:
        self.failover = failover

    async def get(self) -> int:
        return await self.failover.run(lambda counter: counter.get())

    async def bump(self) -> int:
        return await self.failover.run(lambda counter: counter.bump())


def version_counter(
    redis: RedisClient | None, name: str, *, fail_mode: FailMode = "closed", retry_interval: float = 1.0
) -> VersionCounter:
    """The shared counter ``name`` under ``fail_mode`` when there is Redis, in process otherwise."""
    if redis is None:
        return MemoryVersionCounter()
    failover: Failover[VersionCounter] = Failover(
        RedisVersionCounter(redis, name),
        MemoryVersionCounter(),
        mode=fail_mode,
        component=f"version_{name}",
        message="The service is temporarily unavailable",
        retry_interval=retry_interval,
        level="error",
    )
    return FailoverVersionCounter(failover)


class Watched:
    """A version counter read at most once per ``interval``; ``changed()`` says when to reload."""

    def __init__(
        self, counter: VersionCounter, *, interval: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.counter = counter
        self.interval = interval
        self.monotonic = monotonic
        self.seen: int | None = None
        self._checked = float("-inf")

    def due(self) -> bool:
        """Whether ``changed()`` would read the counter now; when not, it answers False, and a
        caller on the request path spares the coroutine (``due() and await changed()``)."""
        return self.seen is None or self.monotonic() - self._checked >= self.interval

    async def changed(self) -> bool:
        """True when the shared version moved since the last call that returned True (or ever)."""
        now = self.monotonic()
        if self.seen is not None and now - self._checked < self.interval:
            return False
        current = await self.counter.get()
        self._checked = now
        if current == self.seen:
            return False
        self.seen = current
        return True

    async def bump(self) -> None:
        """Announce a change; the caller drops its own cache right away."""
        self.seen = await self.counter.bump()
        self._checked = self.monotonic()
