# SPDX-License-Identifier: Apache-2.0
"""Each Redis-backed component under the one fail mode, against a Redis that refuses connections:
closed refuses with ``ServiceUnavailable`` (503), open answers in process and counts it; the
circuit breaker always degrades to its in-process state."""

from __future__ import annotations

from typing import cast

import pytest
from redis.asyncio import Redis

from bastion.auth.throttle import FailoverAttemptStore, PasswordThrottle, ThrottleRules, attempt_store_for
from bastion.errors import ServiceUnavailable
from bastion.failover import FailMode
from bastion.invalidation import FailoverVersionCounter, MemoryVersionCounter, Watched, version_counter
from bastion.llm.breaker import BreakerConfig, State
from bastion.llm.breaker_store import FailoverBreakerStore


def throttle_over(redis: Redis, mode: FailMode) -> PasswordThrottle:
    return PasswordThrottle(
        store=attempt_store_for(redis, fail_mode=mode),
        rules=ThrottleRules(delay_after=2),
        clock=lambda: 1000.0,
    )


async def test_throttle_closed_refuses_a_password_check_it_cannot_count(dead_redis: Redis) -> None:
    throttle = throttle_over(dead_redis, "closed")
    for _ in range(2):  # the refused connection, then the skip window
        with pytest.raises(ServiceUnavailable) as raised:
            await throttle.check("a@example.com", "192.0.2.1")
        assert raised.value.retry_after >= 1
    with pytest.raises(ServiceUnavailable):
        await throttle.failure("a@example.com", "192.0.2.1")
    stats = cast(FailoverAttemptStore, throttle.store).failover.stats
    assert stats["storage_failures"] == 1 and stats["refused_unavailable"] == 3


async def test_throttle_open_counts_in_process_and_still_throttles(dead_redis: Redis) -> None:
    throttle = throttle_over(dead_redis, "open")
    assert (await throttle.check("a@example.com", "192.0.2.1")).allowed
    for _ in range(2):
        await throttle.failure("a@example.com", "192.0.2.1")
    verdict = await throttle.check("a@example.com", "192.0.2.1")
    assert not verdict.allowed and verdict.retry_after >= 1
    stats = cast(FailoverAttemptStore, throttle.store).failover.stats
    assert stats["storage_failures"] == 1 and stats["fallback_calls"] >= 4


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_version_counter_closed_refuses_open_counts_in_process(
    dead_redis: Redis, mode: FailMode
) -> None:
    counter = version_counter(dead_redis, "api_keys", fail_mode=mode)
    watched = Watched(counter, interval=0.0)
    if mode == "closed":
        # A cache that cannot learn whether its entries were revoked is not trusted.
        with pytest.raises(ServiceUnavailable):
            await watched.changed()
        with pytest.raises(ServiceUnavailable):
            await watched.bump()
        return
    assert await watched.changed()  # first look: the cache is (re)loaded
    assert not await watched.changed()
    await watched.bump()  # a change made here still reaches this instance's cache
    assert isinstance(counter, FailoverVersionCounter)
    assert isinstance(counter.failover.fallback, MemoryVersionCounter)
    assert counter.failover.fallback.value == 1
    assert counter.failover.stats["fallback_calls"] >= 3


async def test_version_counter_without_redis_is_in_process() -> None:
    assert isinstance(version_counter(None, "blocklist"), MemoryVersionCounter)


async def test_breaker_degrades_to_an_in_process_breaker_even_when_closed(dead_redis: Redis) -> None:
    store = FailoverBreakerStore.over(dead_redis)
    config = BreakerConfig(failure_threshold=2, recovery_seconds=30.0)
    assert (await store.acquire("model", config, 0.0)).allowed
    await store.failure("model", config, 1.0)
    await store.failure("model", config, 2.0)
    # The in-process breaker opened on the failures this instance saw: the provider is still shed.
    assert await store.state("model") == State.OPEN
    assert not (await store.acquire("model", config, 3.0)).allowed
    assert store.failover.mode == "open"
    assert store.failover.stats["refused_unavailable"] == 0
    assert store.failover.stats["storage_failures"] >= 1
