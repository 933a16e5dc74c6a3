# SPDX-License-Identifier: Apache-2.0
"""Limiter storages: a protocol of atomic primitives, a memory and a Redis implementation."""

from __future__ import annotations

from bastion.ratelimit.storage.base import (
    Block,
    BudgetResult,
    BudgetSettlement,
    LimiterStorage,
    SlotResult,
)
from bastion.ratelimit.storage.memory import DEFAULT_MAX_KEYS, MemoryStorage
from bastion.ratelimit.storage.redis import RedisStorage, fail_fast_client
from bastion.redis_client import URL_FORMS, RedisClient, is_cluster_url
from bastion.redis_client import connect as connect_redis

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
    redis: RedisClient | None = None,
    max_keys: int = DEFAULT_MAX_KEYS,
    timeout: float = 0.5,
) -> LimiterStorage:
    """The storage for a URL: ``memory://`` (or none) in process, a Redis URL shared
    (``redis://``, ``rediss://``, ``unix://``, or a Cluster's ``redis+cluster://``).

    With an existing client (the lifespan's), the storage talks to the same server through a
    fail-fast sibling client whose socket timeouts are ``timeout`` seconds.
    """
    if redis is not None:
        return RedisStorage(fail_fast_client(redis, timeout), owns_client=True)
    if url is None or url == "" or url.startswith("memory://"):
        return MemoryStorage(max_keys=max_keys)
    if url.startswith(("redis://", "rediss://", "unix://")) or is_cluster_url(url):
        return RedisStorage(
            fail_fast_client(connect_redis(url), timeout),
            owns_client=True,
        )
    raise ValueError(f"a limiter storage URL is memory:// or a Redis URL ({URL_FORMS})")
