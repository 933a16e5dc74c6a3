# SPDX-License-Identifier: Apache-2.0
"""The access-token denylist: jtis revoked before they expire (logout).

Entries live exactly as long as the token could: a denylisted jti is forgotten once the token it
names would have expired anyway. Redis when REDIS_URL is set (shared by every instance), memory
otherwise (this process only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

KEY_PREFIX = "bastion:auth:deny:"


class Denylist(Protocol):
    async def add(self, jti: str, *, ttl_seconds: int) -> None:
        """Refuse ``jti`` for the next ``ttl_seconds`` (at least one second)."""

    async def contains(self, jti: str) -> bool:
        """Whether ``jti`` is currently refused."""


class MemoryDenylist:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, float] = {}

    async def add(self, jti: str, *, ttl_seconds: int) -> None:
        now = self._clock()
        # Drop expired entries as we go, so memory stays bounded by live tokens.
        for key in [k for k, until in self._entries.items() if until <= now]:
            del self._entries[key]
        self._entries[jti] = now + max(1, ttl_seconds)

    async def contains(self, jti: str) -> bool:
        until = self._entries.get(jti)
        return until is not None and until > self._clock()


class RedisDenylist:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def add(self, jti: str, *, ttl_seconds: int) -> None:
        await self._redis.set(KEY_PREFIX + jti, b"1", ex=max(1, ttl_seconds))

    async def contains(self, jti: str) -> bool:
        return bool(await self._redis.exists(KEY_PREFIX + jti))
