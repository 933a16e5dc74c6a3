# SPDX-License-Identifier: Apache-2.0
"""Limiter storages: a protocol of atomic primitives, a memory and a Redis implementation."""

from __future__ import annotations

from redis.asyncio import Redis

from bastion.ratelimit.storage.base import (
    Block,
    BudgetResult,
    BudgetSettlement,
    LimiterStorage,
    SlotResult,
)
from bastion.ratelimit.storage.memory import DEFAULT_MAX_KEYS, MemoryStorage
from bastion.ratelimit.storage.redis import RedisStorage, fail_fast_client

__all__ = [
    "Block",
    "BudgetResult",
    "BudgetSettlement",
    "LimiterStorage",
    "MemoryStorage",
    "RedisStorage",
    "SlotResult",
    "create_storage",
]


def create_storage(
    url: str | None,
    *,
    redis: Redis | None = None,
    max_keys: int = DEFAULT_MAX_KEYS,
    timeout: float = 0.5,
) -> LimiterStorage:
    """The storage for a URL: ``memory://`` (or none) in process, ``redis://``/``rediss://`` shared.

    With an existing client (the lifespan's), the storage talks to the same server through a
    fail-fast sibling client whose socket timeouts are ``timeout`` seconds.
    """
    if redis is not None:
        return RedisStorage(fail_fast_client(redis, timeout), owns_client=True)
    if url is None or url == "" or url.startswith("memory://"):
        return MemoryStorage(max_keys=max_keys)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStorage(
            fail_fast_client(Redis.from_url(url), timeout),
            owns_client=True,
        )
    raise ValueError("a limiter storage URL is memory://, redis://, rediss:// or unix://")
