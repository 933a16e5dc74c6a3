# SPDX-License-Identifier: Apache-2.0
"""What only the Redis storage must prove: one round trip, expiry, Cluster-safe keys, NOSCRIPT."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bastion.ratelimit.algorithm import Outcome, Rate
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.storage import RedisStorage
from bastion.ratelimit.storage.base import BudgetCall, LimitCall, SlotRenewal
from bastion.redis_client import RedisClient, connect
from tests.support.clock import FakeClock
from tests.support.redis_counting import counting_client, round_trips

pytestmark = pytest.mark.redis

LOGIN = Rate.parse("5/minute;burst=3")


@pytest.fixture
async def client(each_redis_url: str) -> AsyncIterator[RedisClient]:
    """A client of the single Redis, then of the Redis Cluster."""
    redis = connect(each_redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _command_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_each_decision_is_exactly_one_round_trip(redis_url: str) -> None:
    counted = counting_client(redis_url)
    client = Redis.from_url(redis_url)
    try:
        storage = RedisStorage(counted)
        clock = FakeClock()
        await storage.load_scripts()  # also opens the connection (AUTH etc. are not decisions)
        await client.config_resetstat()
        before = round_trips()
        for i in range(50):
            await storage.decide(
                f"ip:10.0.0.{i % 5}", "login", clock(), LOGIN.interval, LOGIN.tolerance, 1, Escalation()
            )
        assert round_trips() - before == 50
        # On the server, the only command clients sent was EVALSHA (the rest ran inside it).
        calls = await _command_calls(client)
        assert calls["evalsha"] == 50
        assert "eval" not in calls and "script|load" not in calls
    finally:
        await counted.aclose()
        await client.aclose()


async def test_state_expires_once_the_bucket_is_full_again(client: RedisClient) -> None:
    storage = RedisStorage(client)
    clock = FakeClock()
    for _ in range(2):
        await storage.decide(
            "ip:10.0.0.1", "login", clock(), LOGIN.interval, LOGIN.tolerance, 1, Escalation()
        )
    keys = [key async for key in client.scan_iter("bastion:rl:*")]
    assert len(keys) == 1
    ttl_ms = await client.pttl(keys[0])
    assert 23_000 < ttl_ms <= 24_000  # two requests = two 12 s intervals to refill


async def test_every_key_a_script_touches_shares_one_cluster_slot(client: RedisClient) -> None:
    storage = RedisStorage(client)
    clock = FakeClock()
    escalation = Escalation(violation_threshold=2)
    for _ in range(6):
        await storage.decide("ip:10.0.0.1", "login", clock(), LOGIN.interval, LOGIN.tolerance, 1, escalation)
    await storage.record_auth_failure("ip:10.0.0.1", clock(), Escalation())
    keys = [key async for key in client.scan_iter("bastion:rl:{*")]
    assert len(keys) == 3  # bucket, abuse counters, block
    assert len({key_slot(key) for key in keys}) == 1
    for key in keys:
        assert await client.pttl(key) > 0  # nothing lives forever


async def test_a_forgotten_script_is_reloaded(client: RedisClient) -> None:
    storage = RedisStorage(client)
    clock = FakeClock()
    await storage.load_scripts()
    await client.script_flush()  # what a Redis restart or failover does
    decision = await storage.decide(
        "ip:10.0.0.1", "login", clock(), LOGIN.interval, LOGIN.tolerance, 1, Escalation()
    )
    assert decision.outcome == Outcome.ALLOWED
    assert decision.remaining == 2


async def test_an_admission_after_a_restart_spends_each_allowance_once(client: Redis) -> None:
    # Every script forgotten: each is loaded and run again by itself, the others never twice.
    storage = RedisStorage(client)
    clock = FakeClock()
    calls = [
        LimitCall(identity, "login", LOGIN.interval, LOGIN.tolerance) for identity in ("user:u1", "key:k1")
    ]
    budget = BudgetCall("budget:{key:k1}:day", 10, 100, clock() + 3600)
    renewal = SlotRenewal(("slots:{sessions}:key:k1",), "s1", clock() + 60)
    await storage.acquire_slots(renewal.keys, (5,), "s1", clock(), clock() + 60)
    await client.script_flush()
    admitted = await storage.admit(calls, budget, renewal, clock(), Escalation())
    assert [d.remaining for d in admitted.decisions if d is not None] == [2, 2]
    assert admitted.budget is not None and admitted.budget.remaining == 90 and admitted.renewed
    await client.script_flush()
    settled = await storage.settle_budget(budget.key, 10, 4, 100, clock(), budget.expires_at)
    assert (settled.used, settled.reserved) == (4, 0)


async def test_two_clients_share_one_limit(each_redis_url: str) -> None:
    clock = FakeClock()
    first, second = connect(each_redis_url), connect(each_redis_url)
    try:
        a, b = RedisStorage(first), RedisStorage(second)
        outcomes = []
        for storage in (a, b, a, b):
            decision = await storage.decide(
                "key:k1", "login", clock(), LOGIN.interval, LOGIN.tolerance, 1, Escalation()
            )
            outcomes.append(decision.outcome)
        assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
        # A block placed through one instance is seen by the other, and listed by both.
        await a.block("key:k1", clock(), clock() + 60, "manual")
        assert await b.blocked("key:k1", clock()) is not None
        assert [blk.identity for blk in await b.list_blocks(clock(), 10)] == ["key:k1"]
    finally:
        await first.aclose()
        await second.aclose()
