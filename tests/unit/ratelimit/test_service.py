# SPDX-License-Identifier: Apache-2.0
"""The limiter service: policies over a storage, block notices, and the explicit fail mode."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bastion.errors import ServiceUnavailable
from bastion.ratelimit.algorithm import Outcome
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.policies import Policy, policy_table
from bastion.ratelimit.service import BlockNotice, RateLimiter
from bastion.ratelimit.storage import LimiterStorage, MemoryStorage, RedisStorage
from bastion.ratelimit.storage.redis import fail_fast_client
from tests.conftest import SettingsFactory
from tests.support.clock import FakeClock
from tests.support.servers import free_port


def make_limiter(
    make_settings: SettingsFactory, storage: LimiterStorage, clock: FakeClock, **kwargs: object
) -> RateLimiter:
    return RateLimiter(
        storage=storage,
        policies=policy_table(make_settings()),
        escalation=Escalation(violation_threshold=3, auth_failure_threshold=2, block_seconds=60.0),
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_blocks_placed_and_lifted_are_announced(
    make_settings: SettingsFactory, storage: LimiterStorage, clock: FakeClock
) -> None:
    notices: list[BlockNotice] = []

    async def listen(notice: BlockNotice) -> None:
        notices.append(notice)

    limiter = make_limiter(make_settings, storage, clock, on_block=listen)
    for _ in range(3):
        await limiter.hit(Policy.LOGIN, "ip:192.0.2.1")
    outcomes = [(await limiter.hit(Policy.LOGIN, "ip:192.0.2.1", request_id="r1")).outcome for _ in range(3)]
    assert outcomes == [Outcome.LIMITED, Outcome.LIMITED, Outcome.NEWLY_BLOCKED]
    assert await limiter.record_auth_failure("key:k1") is False
    assert await limiter.record_auth_failure("key:k1", request_id="r2") is True
    assert await limiter.unblock("key:k1", actor="admin-1") is True
    assert await limiter.unblock("key:k1", actor="admin-1") is False
    assert [(n.action, n.identity, n.reason, n.actor, n.request_id) for n in notices] == [
        ("placed", "ip:192.0.2.1", "violations", None, "r1"),
        ("placed", "key:k1", "auth_failures", None, "r2"),
        ("lifted", "key:k1", "manual", "admin-1", None),
    ]
    assert [b.identity for b in await limiter.list_blocks()] == ["ip:192.0.2.1"]
    blocked = await limiter.blocked("ip:192.0.2.1")
    assert blocked is not None and blocked.until == pytest.approx(clock() + 60.0)


async def test_a_failing_listener_never_fails_the_decision(
    make_settings: SettingsFactory, storage: LimiterStorage, clock: FakeClock
) -> None:
    async def broken(notice: BlockNotice) -> None:
        raise RuntimeError("audit store down")

    limiter = make_limiter(make_settings, storage, clock, on_block=broken)
    placed = await limiter.block("ip:192.0.2.7", seconds=30, actor="admin-1")
    assert placed.until == pytest.approx(clock() + 30)
    assert (await limiter.hit(Policy.GLOBAL, "ip:192.0.2.7")).outcome == Outcome.BLOCKED


async def test_accounts_are_never_blocked_for_failed_logins(
    make_settings: SettingsFactory, clock: FakeClock
) -> None:
    limiter = make_limiter(make_settings, MemoryStorage(), clock)
    with pytest.raises(ValueError):
        await limiter.record_auth_failure("user:victim")
    with pytest.raises(ValueError):
        await limiter.record_auth_failure("email:abc")


@pytest.fixture
async def unreachable_redis() -> RedisStorage:
    # A real client pointed at a port nothing listens on: every call is refused at once.
    return RedisStorage(fail_fast_client(Redis(host="127.0.0.1", port=free_port()), 0.5), owns_client=True)


async def test_fail_closed_refuses_with_503(
    make_settings: SettingsFactory, clock: FakeClock, unreachable_redis: RedisStorage
) -> None:
    limiter = make_limiter(make_settings, unreachable_redis, clock, fail_mode="closed")
    for _ in range(2):  # the second is refused without another connection attempt
        with pytest.raises(ServiceUnavailable) as refused:
            await limiter.hit(Policy.LOGIN, "ip:192.0.2.1")
        assert refused.value.retry_after >= 1
    with pytest.raises(ServiceUnavailable):
        await limiter.record_auth_failure("ip:192.0.2.1")
    assert limiter.stats["storage_failures"] == 1
    assert limiter.stats["refused_unavailable"] == 3
    await limiter.aclose()


async def test_fail_open_decides_locally_and_counts_it(
    make_settings: SettingsFactory, clock: FakeClock, unreachable_redis: RedisStorage
) -> None:
    limiter = make_limiter(make_settings, unreachable_redis, clock, fail_mode="open")
    outcomes = [(await limiter.hit(Policy.LOGIN, "ip:192.0.2.1")).outcome for _ in range(4)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
    assert limiter.stats["storage_failures"] == 1
    assert limiter.stats["fallback_calls"] == 4
    assert await limiter.blocked("ip:192.0.2.1") is None
    await limiter.aclose()


async def test_the_limiter_is_built_from_settings(make_settings: SettingsFactory, redis_url: str) -> None:
    memory = RateLimiter.from_settings(make_settings())
    assert not memory.shared and memory.fail_mode == "open"
    client = Redis.from_url(redis_url)
    try:
        shared = RateLimiter.from_settings(make_settings(RATE_LIMIT_FAIL_MODE="closed"), redis=client)
        assert shared.shared and shared.fail_mode == "closed"
        assert (await shared.hit(Policy.GLOBAL, "ip:192.0.2.1")).allowed
        await shared.aclose()
        assert await client.ping()  # the app's own client stays open
    finally:
        await client.aclose()
