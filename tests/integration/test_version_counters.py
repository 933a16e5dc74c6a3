# SPDX-License-Identifier: Apache-2.0
"""One contract for the version counters that invalidate caches across instances, on memory, on
the real Redis and on a Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.invalidation import MemoryVersionCounter, RedisVersionCounter, VersionCounter
from bastion.redis_client import RedisClient, connect
from tests.conftest import BACKENDS, backend_redis_url


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str | None:
    return backend_redis_url(request)


@pytest.fixture
async def clients(backend_url: str | None) -> AsyncIterator[list[RedisClient]]:
    """Two clients of the backend (two instances); none for memory."""
    made = [] if backend_url is None else [connect(backend_url), connect(backend_url)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


async def test_a_counter_starts_at_zero_and_moves_on_with_each_bump(clients: list[RedisClient]) -> None:
    counter: VersionCounter = RedisVersionCounter(clients[0], "keys") if clients else MemoryVersionCounter()
    assert await counter.get() == 0
    assert [await counter.bump() for _ in range(3)] == [1, 2, 3]
    assert await counter.get() == 3


async def test_instances_share_a_counter_and_counters_are_independent(each_redis_url: str) -> None:
    first, second = connect(each_redis_url), connect(each_redis_url)
    try:
        one, two = RedisVersionCounter(first, "keys"), RedisVersionCounter(second, "keys")
        other = RedisVersionCounter(second, "blocklist")
        await one.bump()
        assert await two.bump() == 2
        assert await one.get() == 2
        assert await other.get() == 0
    finally:
        await first.aclose()
        await second.aclose()
