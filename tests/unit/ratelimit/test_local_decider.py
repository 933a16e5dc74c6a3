# SPDX-License-Identifier: Apache-2.0
"""The limiter's in-process decision function: ``hit`` without the coroutine, same answers."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from bastion.ratelimit.algorithm import Outcome, Rate, gcra
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.policies import Policy, PolicyRule, Scope, policy_table
from bastion.ratelimit.service import BlockNotice, RateLimiter
from bastion.ratelimit.storage import MemoryStorage, RedisStorage
from bastion.ratelimit.storage.redis import fail_fast_client
from tests.conftest import SettingsFactory
from tests.support.clock import FakeClock
from tests.support.servers import free_port

ESCALATION = Escalation(violation_threshold=3, auth_failure_threshold=2, block_seconds=60.0)
IDENTITIES = [f"ip:198.51.100.{i}" for i in range(6)]
# Mostly quick succession (denials, penalties, blocks), sometimes enough quiet to refill or expire.
STEPS = [0.0, 0.0, 0.0, 0.5, 1.0, 6.0, 12.0, 30.0, 90.0, 700.0]


def make_limiter(
    make_settings: SettingsFactory, clock: FakeClock, *, max_keys: int = 10_000, **kwargs: object
) -> RateLimiter:
    return RateLimiter(
        storage=MemoryStorage(max_keys=max_keys),
        policies=policy_table(make_settings()),
        escalation=ESCALATION,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_local_decider_answers_exactly_as_hit_does(make_settings: SettingsFactory) -> None:
    # Two limiters fed the same requests at the same times: one through the plain call, one
    # through ``await hit``. A small key bound makes the table fill up too.
    clock_a, clock_b = FakeClock(), FakeClock()
    direct = make_limiter(make_settings, clock_a, max_keys=4)
    awaited = make_limiter(make_settings, clock_b, max_keys=4)
    decide = direct.decider(Policy.LOGIN)
    assert decide is not None
    rng = random.Random(20261122)
    outcomes = set()
    for _ in range(600):
        step = rng.choice(STEPS)
        clock_a.advance(step)
        clock_b.advance(step)
        identity = rng.choice(IDENTITIES)
        cost = rng.choice([1, 1, 1, 2, 4])
        raw = decide(identity, cost)
        expected = await awaited.hit(Policy.LOGIN, identity, cost)
        assert type(raw) is tuple
        assert raw == tuple(expected)
        outcomes.add(raw[0])
    assert outcomes == set(Outcome)  # admitted, limited, blocked, newly blocked, table full


async def test_admissions_are_exactly_the_gcra_step(make_settings: SettingsFactory) -> None:
    rate = Rate.parse("7/minute;burst=4")
    clock = FakeClock()
    limiter = RateLimiter(
        storage=MemoryStorage(),
        policies={Policy.LOGIN: PolicyRule(Policy.LOGIN, rate, Scope.IP)},
        escalation=ESCALATION,
        clock=clock,
    )
    decide = limiter.decider(Policy.LOGIN)
    assert decide is not None
    rng = random.Random(7)
    tat: float | None = None
    admitted = 0
    for _ in range(300):
        clock.advance(rng.choice([0.0, 1.3, 4.0, 8.57, 20.0]))
        step = gcra(tat, clock(), rate.interval, rate.tolerance)
        if not step.allowed:
            continue  # only admissions: a denial would start the escalation the pure step lacks
        outcome, remaining, retry_after, reset_after = decide("ip:203.0.113.5")
        assert (outcome, remaining, retry_after, reset_after) == (
            Outcome.ALLOWED,
            step.remaining,
            0.0,
            step.reset_after,
        )
        tat = step.tat
        admitted += 1
    assert admitted > 100


async def test_a_block_the_decider_places_is_announced_with_its_time(
    make_settings: SettingsFactory,
) -> None:
    notices: list[BlockNotice] = []

    async def listen(notice: BlockNotice) -> None:
        notices.append(notice)

    clock = FakeClock()
    limiter = make_limiter(make_settings, clock, on_block=listen)
    decide = limiter.decider(Policy.LOGIN)
    assert decide is not None
    outcomes = [decide("ip:192.0.2.9")[0] for _ in range(6)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED] * 2 + [Outcome.NEWLY_BLOCKED]
    placed_at = clock()
    clock.advance(5.0)  # the notice carries the block's own end, not a later reading of the clock
    await limiter.announce_violation_block("ip:192.0.2.9", request_id="r-9")
    assert [(n.action, n.identity, n.reason, n.until, n.request_id) for n in notices] == [
        ("placed", "ip:192.0.2.9", "violations", placed_at + 60.0, "r-9")
    ]
    assert [b.identity for b in await limiter.list_blocks()] == ["ip:192.0.2.9"]
    assert decide("ip:192.0.2.9")[0] == Outcome.BLOCKED
    # Every policy refuses a blocked identity, and the block ends on time.
    global_decide = limiter.decider(Policy.GLOBAL)
    assert global_decide is not None
    assert global_decide("ip:192.0.2.9")[:2] == (Outcome.BLOCKED, 0)
    clock.advance(55.0)
    assert global_decide("ip:192.0.2.9")[0] == Outcome.ALLOWED


async def test_replacing_the_clock_rebinds_the_decider(make_settings: SettingsFactory) -> None:
    limiter = make_limiter(make_settings, FakeClock())
    later = FakeClock(start=1_800_000_000.0)
    limiter.clock = later
    decide = limiter.decider(Policy.LOGIN)
    assert decide is not None
    assert [decide("ip:192.0.2.3")[0] for _ in range(4)] == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
    later.advance(12.0)  # one login interval on the new clock refills one request
    assert decide("ip:192.0.2.3")[0] == Outcome.ALLOWED
    block = await limiter.block("ip:192.0.2.4", seconds=10)
    assert block.until == pytest.approx(later() + 10)


async def test_a_shared_storage_has_no_local_decider(make_settings: SettingsFactory) -> None:
    # Never contacted: only the limiter's wiring is under test.
    storage = RedisStorage(fail_fast_client(Redis(host="127.0.0.1", port=free_port()), 0.5), owns_client=True)
    limiter = RateLimiter(storage=storage, policies=policy_table(make_settings()), clock=FakeClock())
    assert limiter.decider(Policy.GLOBAL) is None
    await limiter.aclose()


@pytest.mark.redis
async def test_the_local_decider_and_the_redis_script_agree(
    make_settings: SettingsFactory, redis_url: str
) -> None:
    clock = FakeClock()
    local = make_limiter(make_settings, clock)
    client = Redis.from_url(redis_url)
    shared = RateLimiter(
        storage=RedisStorage(client),
        policies=policy_table(make_settings()),
        escalation=ESCALATION,
        clock=clock,
    )
    decide = local.decider(Policy.LOGIN)
    assert decide is not None
    rng = random.Random(99)
    outcomes = set()
    try:
        for _ in range(300):
            clock.advance(rng.choice(STEPS))
            identity = rng.choice(IDENTITIES)
            cost = rng.choice([1, 1, 1, 2, 4])
            mine = decide(identity, cost)
            theirs = await shared.hit(Policy.LOGIN, identity, cost)
            # Redis reports an admission's reset in whole milliseconds.
            assert mine[:2] == theirs[:2]
            assert mine[2:] == pytest.approx(theirs[2:], abs=1e-3)
            outcomes.add(mine[0])
    finally:
        await client.aclose()
    assert outcomes == {Outcome.ALLOWED, Outcome.LIMITED, Outcome.BLOCKED, Outcome.NEWLY_BLOCKED}
