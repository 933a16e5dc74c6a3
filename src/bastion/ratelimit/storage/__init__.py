# SPDX-License-Identifier: Apache-2.0
"""Limiter storages: a protocol of atomic primitives, a memory and a Redis implementation."""

from __future__ import annotations

from redis.asyncio import Redis

from bastion.ratelimit.storage.base import Block, BudgetResult, LimiterStorage, SlotResult
from bastion.ratelimit.storage.memory import DEFAULT_MAX_KEYS, MemoryStorage
from bastion.ratelimit.storage.redis import RedisStorage

__all__ = [
    "Block",
    "BudgetResult",
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

    An existing client (the lifespan's) is reused when given, so the app holds one pool.
    """
    if redis is not None:
        return RedisStorage(redis, timeout=timeout)
    if url is None or url == "" or url.startswith("memory://"):
        return MemoryStorage(max_keys=max_keys)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStorage(
            Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2),
            timeout=timeout,
            owns_client=True,
        )
    raise ValueError("a limiter storage URL is memory://, redis://, rediss:// or unix://")
