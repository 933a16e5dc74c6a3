# SPDX-License-Identifier: Apache-2.0
"""The in-process table stays within its bound and never buys room by resetting live state."""

from __future__ import annotations

from bastion.ratelimit.algorithm import Outcome, Rate
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.storage import MemoryStorage
from tests.support.clock import FakeClock

RATE = Rate.parse("10/minute;burst=5")
ESCALATION = Escalation(violation_threshold=0)


async def decide(storage: MemoryStorage, identity: str, clock: FakeClock):  # type: ignore[no-untyped-def]
    return await storage.decide(identity, "global", clock(), RATE.interval, RATE.tolerance, 1, ESCALATION)


async def test_two_hundred_thousand_identities_never_grow_past_the_bound() -> None:
    # The same code path as ten million identities, at a fiftieth of the cost: what matters is
    # that the count is capped however many identities arrive.
    storage = MemoryStorage(max_keys=1000)
    clock = FakeClock()
    refused = 0
    for i in range(200_000):
        decision = await decide(storage, f"ip:{i}", clock)
        refused += decision.outcome == Outcome.FULL
        if i % 1000 == 0:
            clock.advance(0.5)  # time passes while the flood goes on
        assert storage.bucket_budget.used <= 1000
    assert storage.bucket_budget.used <= 1000
    assert refused > 0  # identities that arrived while every slot was still draining waited


async def test_a_full_table_refuses_newcomers_rather_than_reset_anyone() -> None:
    storage = MemoryStorage(max_keys=100)
    clock = FakeClock()
    for _ in range(5):
        await decide(storage, "ip:victim-bucket-owner", clock)
    assert (await decide(storage, "ip:victim-bucket-owner", clock)).outcome == Outcome.LIMITED
    for i in range(99):
        assert (await decide(storage, f"ip:filler-{i}", clock)).allowed
    newcomer = await decide(storage, "ip:newcomer", clock)
    assert newcomer.outcome == Outcome.FULL
    assert newcomer.retry_after >= 1
    # The drained identity was not evicted to make room: it is still limited.
    assert (await decide(storage, "ip:victim-bucket-owner", clock)).outcome == Outcome.LIMITED
    assert storage.bucket_budget.used == 100


async def test_recovered_state_makes_room() -> None:
    storage = MemoryStorage(max_keys=100)
    clock = FakeClock()
    for i in range(100):
        await decide(storage, f"ip:{i}", clock)
    assert (await decide(storage, "ip:late", clock)).outcome == Outcome.FULL
    clock.advance(6.0)  # one request at 10/minute refills in 6 s
    assert (await decide(storage, "ip:late", clock)).allowed
    assert storage.bucket_budget.used == 100


async def test_a_pass_that_found_nothing_is_not_repeated_for_every_newcomer() -> None:
    storage = MemoryStorage(max_keys=300)
    clock = FakeClock()
    for i in range(300):
        await decide(storage, f"ip:{i}", clock)
    # The first newcomers complete a pass over the table; afterwards refusals are immediate
    # until the soonest entry recovers, and then room is found again.
    for i in range(10):
        assert (await decide(storage, f"ip:new-{i}", clock)).outcome == Outcome.FULL
    refused = await decide(storage, "ip:another", clock)
    assert refused.outcome == Outcome.FULL
    assert refused.retry_after >= 1
    clock.advance(refused.retry_after)
    assert (await decide(storage, "ip:another", clock)).allowed


async def test_blocks_and_counters_are_bounded_too() -> None:
    storage = MemoryStorage(max_keys=100)
    clock = FakeClock()
    escalation = Escalation(auth_failure_threshold=1, block_seconds=60.0)
    for i in range(1000):
        await storage.record_auth_failure(f"ip:{i}", clock(), escalation)
    assert len(storage.abuse) <= 100
    assert len(storage.blocks) <= 100


async def test_the_bound_holds_across_policies() -> None:
    storage = MemoryStorage(max_keys=100)
    clock = FakeClock()
    for i in range(300):
        for bucket in ("global", "login", "journal_read"):
            await storage.decide(f"ip:{i}", bucket, clock(), RATE.interval, RATE.tolerance, 1, ESCALATION)
    assert storage.bucket_budget.used == 100
    assert sum(len(table) for table in storage.buckets.values()) == 100
