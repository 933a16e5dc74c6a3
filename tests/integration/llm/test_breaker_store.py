# SPDX-License-Identifier: Apache-2.0
"""One contract for every breaker store: the Redis Lua must behave exactly as the pure machine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.llm.breaker import BreakerConfig, State
from bastion.llm.breaker_store import BreakerStore, MemoryBreakerStore, RedisBreakerStore
from bastion.redis_client import connect
from tests.conftest import BACKENDS, backend_redis_url, empty_redis
from tests.support.redis_counting import recording_round_trips

CONFIG = BreakerConfig(failure_threshold=3, recovery_seconds=10, half_open_probes=2)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[BreakerStore]:
    url = backend_redis_url(request, emptied=False)
    if url is None:
        yield MemoryBreakerStore()
        return
    await empty_redis(url)
    redis = connect(url)
    try:
        yield RedisBreakerStore(redis)
    finally:
        await redis.aclose()


async def test_full_cycle(store: BreakerStore) -> None:
    for now in (1, 2):
        assert (await store.acquire("p", CONFIG, now)).allowed
        await store.failure("p", CONFIG, now)
    assert await store.state("p") is State.CLOSED
    await store.failure("p", CONFIG, 3.5)
    assert await store.state("p") is State.OPEN
    refused = await store.acquire("p", CONFIG, 5)
    assert not refused.allowed and refused.retry_after == pytest.approx(8.5)
    # Two probes in half-open, a third refused.
    assert (await store.acquire("p", CONFIG, 13.5)).allowed
    assert await store.state("p") is State.HALF_OPEN
    assert (await store.acquire("p", CONFIG, 13.6)).allowed
    assert not (await store.acquire("p", CONFIG, 13.7)).allowed
    await store.success("p", CONFIG, 14)
    assert await store.state("p") is State.CLOSED
    assert (await store.acquire("p", CONFIG, 14)).allowed


async def test_probe_failure_reopens(store: BreakerStore) -> None:
    for _ in range(3):
        await store.failure("p", CONFIG, 0)
    assert (await store.acquire("p", CONFIG, 10)).allowed
    await store.failure("p", CONFIG, 10)
    assert await store.state("p") is State.OPEN
    decision = await store.acquire("p", CONFIG, 11)
    assert not decision.allowed and decision.retry_after == pytest.approx(9)


async def test_lost_probes_are_replaced_after_a_period(store: BreakerStore) -> None:
    for _ in range(3):
        await store.failure("p", CONFIG, 0)
    assert (await store.acquire("p", CONFIG, 10)).allowed
    assert (await store.acquire("p", CONFIG, 10)).allowed
    assert not (await store.acquire("p", CONFIG, 15)).allowed
    assert (await store.acquire("p", CONFIG, 20)).allowed


async def test_breakers_are_independent_by_name(store: BreakerStore) -> None:
    for _ in range(3):
        await store.failure("a", CONFIG, 0)
    assert not (await store.acquire("a", CONFIG, 1)).allowed
    assert (await store.acquire("b", CONFIG, 1)).allowed


async def test_redis_state_is_shared_between_instances(each_redis_url: str) -> None:
    one, two = connect(each_redis_url), connect(each_redis_url)
    try:
        first, second = RedisBreakerStore(one), RedisBreakerStore(two)
        for _ in range(3):
            await first.failure("p", CONFIG, 0)
        assert not (await second.acquire("p", CONFIG, 1)).allowed
        ttl = await one.pttl("bastion:breaker:{p}")
        assert 0 < ttl <= 600_000  # the state expires on its own
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.redis
async def test_a_clean_reading_is_reused_for_a_moment_only(redis_url: str) -> None:
    one, two = connect(redis_url), connect(redis_url)
    try:
        first, second = RedisBreakerStore(one, fresh_for=0.25), RedisBreakerStore(two)
        assert (await first.acquire("p", CONFIG, 1)).allowed
        with recording_round_trips() as trips:
            assert (await first.acquire("p", CONFIG, 1.1)).allowed
            await first.success("p", CONFIG, 1.2)  # nothing recorded: nothing to reset
        assert trips == []
        for _ in range(3):
            await second.failure("p", CONFIG, 1.2)
        # Opened by another instance: seen once the reading is older than fresh_for.
        assert not (await first.acquire("p", CONFIG, 1.3)).allowed
        assert not (await first.acquire("p", CONFIG, 1.31)).allowed
    finally:
        await one.aclose()
        await two.aclose()
