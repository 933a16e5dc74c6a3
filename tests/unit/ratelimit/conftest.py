# SPDX-License-Identifier: Apache-2.0
"""Storages for the contract suite: every test taking ``storage`` runs on memory and on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bastion.ratelimit.storage import LimiterStorage, MemoryStorage, RedisStorage
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[LimiterStorage]:
    if request.param == "memory":
        yield MemoryStorage(max_keys=10_000)
        return
    url = request.getfixturevalue("redis_server")
    client = Redis.from_url(url)
    await client.flushdb()
    try:
        yield RedisStorage(client)
    finally:
        await client.aclose()
