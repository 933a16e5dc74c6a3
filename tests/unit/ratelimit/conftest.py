# SPDX-License-Identifier: Apache-2.0
"""Storages for the contract suite: every test taking ``storage`` runs on memory, on Redis and on
a Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.ratelimit.storage import LimiterStorage, MemoryStorage, RedisStorage
from bastion.redis_client import RedisClient, connect
from tests.conftest import BACKENDS, backend_redis_url, empty_redis
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = connect(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[LimiterStorage]:
    url = backend_redis_url(request, emptied=False)
    if url is None:
        yield MemoryStorage(max_keys=10_000)
        return
    await empty_redis(url)
    client = connect(url)
    try:
        yield RedisStorage(client)
    finally:
        await client.aclose()
