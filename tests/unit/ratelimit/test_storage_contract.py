# SPDX-License-Identifier: Apache-2.0
"""The storage contract, written once and run on every backend (memory and Redis)."""

from __future__ import annotations

import asyncio

import pytest

from bastion.ratelimit.algorithm import Decision, Outcome, Rate
from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.storage import BudgetResult, BudgetSettlement, LimiterStorage
from bastion.ratelimit.storage.base import BudgetCall, LimitCall, SlotRenewal
from tests.support.clock import FakeClock

LOGIN = Rate.parse("5/minute;burst=3")  # one request per 12 s, three at once
NO_BLOCKS = Escalation(violation_threshold=0, auth_failure_threshold=0)


async def hit(
    storage: LimiterStorage,
    clock: FakeClock,
    identity: str = "ip:198.51.100.7",
    rate: Rate = LOGIN,
    escalation: Escalation = NO_BLOCKS,
    bucket: str = "login",
    cost: int = 1,
) -> Decision:
    return await storage.decide(identity, bucket, clock(), rate.interval, rate.tolerance, cost, escalation)


# -- the bucket ------------------------------------------------------------------------------


async def test_a_full_bucket_admits_the_burst_then_refuses(storage: LimiterStorage, clock: FakeClock) -> None:
    decisions = [await hit(storage, clock) for _ in range(4)]
    assert [d.outcome for d in decisions] == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].retry_after == pytest.approx(12.0)
    # Reset: how long until the bucket is full again (three intervals after the third request).
    assert decisions[2].reset_after == pytest.approx(36.0)


async def test_the_bucket_refills_one_request_per_interval(storage: LimiterStorage, clock: FakeClock) -> None:
    for _ in range(3):
        assert (await hit(storage, clock)).allowed
    clock.advance(11.9)
    assert not (await hit(storage, clock)).allowed
    # One interval after the burst, exactly one more gets in.
    clock.advance(0.2)
    assert (await hit(storage, clock)).allowed
    assert not (await hit(storage, clock)).allowed


async def test_a_full_period_of_quiet_restores_the_whole_burst(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    for _ in range(3):
        await hit(storage, clock)
    clock.advance(36.0)
    assert [(await hit(storage, clock)).remaining for _ in range(3)] == [2, 1, 0]


async def test_identities_and_buckets_are_independent(storage: LimiterStorage, clock: FakeClock) -> None:
    for _ in range(3):
        await hit(storage, clock, identity="ip:203.0.113.1")
    assert not (await hit(storage, clock, identity="ip:203.0.113.1")).allowed
    assert (await hit(storage, clock, identity="ip:203.0.113.2")).allowed
    assert (await hit(storage, clock, identity="ip:203.0.113.1", bucket="refresh")).allowed


async def test_cost_spends_several_requests_at_once(storage: LimiterStorage, clock: FakeClock) -> None:
    assert (await hit(storage, clock, cost=2)).remaining == 1
    assert not (await hit(storage, clock, cost=2)).allowed
    assert (await hit(storage, clock, cost=1)).remaining == 0


async def test_a_cost_above_the_burst_is_never_admitted(storage: LimiterStorage, clock: FakeClock) -> None:
    decision = await hit(storage, clock, cost=4)
    assert decision.outcome == Outcome.LIMITED
    assert decision.retry_after == pytest.approx(12.0)


# -- escalation ------------------------------------------------------------------------------


async def test_returning_offenders_wait_twice_as_long_each_time(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    escalation = Escalation(violation_threshold=0, penalty_cap=100.0)
    for _ in range(3):
        await hit(storage, clock, escalation=escalation)
    waits = []
    decision = await hit(storage, clock, escalation=escalation)
    for _ in range(5):
        assert decision.outcome == Outcome.LIMITED
        waits.append(decision.retry_after)
        clock.advance(decision.retry_after)  # an obedient client comes back exactly when told,
        admitted = 0
        while (decision := await hit(storage, clock, escalation=escalation)).allowed:
            admitted += 1  # spends what refilled meanwhile, and is over the limit again
        assert admitted >= 1
    assert waits == pytest.approx([12.0, 24.0, 48.0, 96.0, 100.0])


async def test_hammering_during_a_penalty_does_not_shorten_it(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    for _ in range(3):
        await hit(storage, clock)
    first = await hit(storage, clock)
    clock.advance(5.0)
    again = await hit(storage, clock)
    assert again.outcome == Outcome.LIMITED
    assert again.retry_after == pytest.approx(first.retry_after - 5.0)


async def test_strikes_are_forgotten_after_a_quiet_window(storage: LimiterStorage, clock: FakeClock) -> None:
    escalation = Escalation(violation_threshold=0, strike_window=60.0)
    for _ in range(3):
        await hit(storage, clock, escalation=escalation)
    assert (await hit(storage, clock, escalation=escalation)).retry_after == pytest.approx(12.0)
    clock.advance(12.0)
    await hit(storage, clock, escalation=escalation)
    assert (await hit(storage, clock, escalation=escalation)).retry_after == pytest.approx(24.0)
    clock.advance(600.0)
    for _ in range(3):
        assert (await hit(storage, clock, escalation=escalation)).allowed
    assert (await hit(storage, clock, escalation=escalation)).retry_after == pytest.approx(12.0)


async def test_repeated_violations_block_the_identity(storage: LimiterStorage, clock: FakeClock) -> None:
    escalation = Escalation(violation_threshold=5, block_seconds=600.0)
    for _ in range(3):
        await hit(storage, clock, escalation=escalation)
    outcomes = [(await hit(storage, clock, escalation=escalation)).outcome for _ in range(5)]
    assert outcomes == [Outcome.LIMITED] * 4 + [Outcome.NEWLY_BLOCKED]
    blocked = await hit(storage, clock, escalation=escalation, bucket="other")
    assert blocked.outcome == Outcome.BLOCKED
    assert blocked.retry_after == pytest.approx(600.0)
    block = await storage.blocked("ip:198.51.100.7", clock())
    assert block is not None
    assert (block.kind, block.value, block.reason) == ("ip", "198.51.100.7", "violations")
    clock.advance(600.0)
    assert await storage.blocked("ip:198.51.100.7", clock()) is None
    assert (await hit(storage, clock, escalation=escalation, bucket="other")).allowed


async def test_violations_outside_the_window_do_not_add_up(storage: LimiterStorage, clock: FakeClock) -> None:
    escalation = Escalation(violation_threshold=3, violation_window=60.0, penalty_cap=1.0)
    rate = Rate.parse("1/second;burst=1")
    for _ in range(4):
        assert (await hit(storage, clock, rate=rate, escalation=escalation)).allowed
        assert (await hit(storage, clock, rate=rate, escalation=escalation)).outcome == Outcome.LIMITED
        clock.advance(30.0)
    assert await storage.blocked("ip:198.51.100.7", clock()) is None


# -- authentication failures and blocks ------------------------------------------------------


async def test_failed_authentications_block_an_ip(storage: LimiterStorage, clock: FakeClock) -> None:
    escalation = Escalation(auth_failure_threshold=3, auth_failure_window=300.0, block_seconds=3600.0)
    placed = [await storage.record_auth_failure("ip:192.0.2.1", clock(), escalation) for _ in range(3)]
    assert placed == [False, False, True]
    decision = await hit(storage, clock, identity="ip:192.0.2.1")
    assert decision.outcome == Outcome.BLOCKED
    assert decision.retry_after == pytest.approx(3600.0)
    block = await storage.blocked("ip:192.0.2.1", clock())
    assert block is not None and block.reason == "auth_failures"
    # Three more failures extend the block but do not report a new one.
    clock.advance(100.0)
    for _ in range(3):
        assert not await storage.record_auth_failure("ip:192.0.2.1", clock(), escalation)
    block = await storage.blocked("ip:192.0.2.1", clock())
    assert block is not None and block.until == pytest.approx(clock() + 3600.0)


async def test_auth_failures_spread_beyond_the_window_never_block(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    escalation = Escalation(auth_failure_threshold=3, auth_failure_window=300.0)
    for _ in range(6):
        assert not await storage.record_auth_failure("key:k1", clock(), escalation)
        clock.advance(200.0)
    assert await storage.blocked("key:k1", clock()) is None


async def test_blocks_are_listed_kept_and_lifted(storage: LimiterStorage, clock: FakeClock) -> None:
    now = clock()
    await storage.block("ip:192.0.2.9", now, now + 100.0, "manual")
    await storage.block("key:abc", now, now + 50.0, "manual")
    # A shorter block never cuts a longer one short.
    kept = await storage.block("ip:192.0.2.9", now, now + 10.0, "manual")
    assert kept.until == pytest.approx(now + 100.0)
    listed = await storage.list_blocks(now, 100)
    assert [b.identity for b in listed] == ["key:abc", "ip:192.0.2.9"]
    assert await storage.unblock("key:abc") is True
    assert await storage.unblock("key:abc") is False
    assert (await hit(storage, clock, identity="key:abc")).allowed
    clock.advance(100.0)
    assert await storage.list_blocks(clock(), 100) == []


async def test_any_of_several_identities_can_be_found_blocked(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    now = clock()
    assert await storage.blocked_any(["key:k1", "user:u1"], now) is None
    await storage.block("user:u1", now, now + 50.0, "manual")
    found = await storage.blocked_any(["key:k1", "user:u1"], now)
    assert found is not None and (found.identity, found.until) == ("user:u1", pytest.approx(now + 50.0))
    assert await storage.blocked_any(["key:k1", "user:u1"], now + 50.0) is None


async def test_blocks_are_listed_by_kind(storage: LimiterStorage, clock: FakeClock) -> None:
    now = clock()
    for index in range(5):
        await storage.block(f"ip:192.0.2.{index}", now, now + 10.0, "auth_failures")
    await storage.block("cidr:198.51.100.0/24", now, now + 100.0, "manual")
    await storage.block("user:u1", now, now + 50.0, "manual")
    # Many address blocks never crowd the networks out of a short listing.
    assert [b.identity for b in await storage.list_blocks(now, 1, "cidr")] == ["cidr:198.51.100.0/24"]
    assert [b.identity for b in await storage.list_blocks(now, 10, "user")] == ["user:u1"]
    assert len(await storage.list_blocks(now, 100, "ip")) == 5
    assert len(await storage.list_blocks(now, 100)) == 7
    assert await storage.unblock("cidr:198.51.100.0/24") is True
    assert await storage.list_blocks(now, 10, "cidr") == []
    clock.advance(60.0)
    assert await storage.list_blocks(clock(), 10, "user") == []


# -- slots (leases and session quotas) -------------------------------------------------------


async def test_slots_hold_up_to_the_limit_and_free_on_release(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    key = ("lease:{key:k1}:voice",)
    now = clock()
    results = [await storage.acquire_slots(key, (2,), f"m{i}", now, now + 60) for i in range(3)]
    assert [r.acquired for r in results] == [True, True, False]
    assert results[2].counts == (2,)
    await storage.release_slots(key, "m0")
    await storage.release_slots(key, "m0")  # idempotent
    assert await storage.count_slots(key[0], now) == 1
    assert (await storage.acquire_slots(key, (2,), "m3", now, now + 60)).acquired


async def test_slots_of_a_dead_holder_expire(storage: LimiterStorage, clock: FakeClock) -> None:
    key = ("lease:{key:k1}:voice",)
    now = clock()
    assert (await storage.acquire_slots(key, (1,), "dead", now, now + 30)).acquired
    assert not (await storage.acquire_slots(key, (1,), "next", now, now + 30)).acquired
    clock.advance(30.0)
    assert await storage.count_slots(key[0], clock()) == 0
    assert (await storage.acquire_slots(key, (1,), "next", clock(), clock() + 30)).acquired


async def test_renewing_keeps_a_slot_and_reacquiring_is_idempotent(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    key = ("lease:{key:k1}:voice",)
    now = clock()
    await storage.acquire_slots(key, (1,), "m", now, now + 30)
    clock.advance(20.0)
    assert await storage.renew_slots(key, "m", clock(), clock() + 30)
    assert (await storage.acquire_slots(key, (1,), "m", clock(), clock() + 30)).acquired
    clock.advance(25.0)
    assert await storage.count_slots(key[0], clock()) == 1
    clock.advance(40.0)
    assert not await storage.renew_slots(key, "m", clock(), clock() + 30)


async def test_slots_across_keys_are_all_or_nothing(storage: LimiterStorage, clock: FakeClock) -> None:
    per_key_a = "slots:{sessions}:key:a"
    per_key_b = "slots:{sessions}:key:b"
    total = "slots:{sessions}:total"
    now = clock()
    assert (await storage.acquire_slots((per_key_a, total), (1, 2), "s1", now, now + 60)).acquired
    refused = await storage.acquire_slots((per_key_a, total), (1, 2), "s2", now, now + 60)
    assert not refused.acquired
    assert refused.counts == (1, 1)
    # The refused attempt took nothing from the total.
    assert (await storage.acquire_slots((per_key_b, total), (1, 2), "s3", now, now + 60)).counts == (1, 2)
    assert not (
        await storage.acquire_slots(("slots:{sessions}:key:c", total), (1, 2), "s4", now, now + 60)
    ).acquired


# -- budgets ---------------------------------------------------------------------------------


async def test_budget_reservations_are_all_or_nothing_and_reset(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    now = clock()
    key = "budget:{key:k1}:day"
    assert await storage.reserve_budget(key, 600, 1000, now, now + 3600) == BudgetResult(True, 400)
    refused = await storage.reserve_budget(key, 500, 1000, now, now + 3600)
    assert (refused.allowed, refused.remaining) == (False, 400)
    assert await storage.reserve_budget(key, 400, 1000, now, now + 3600) == BudgetResult(True, 0)
    assert await storage.settle_budget(key, 0, 0, 1000, now, now + 3600) == BudgetSettlement(0, 0, 1000)
    clock.advance(3600.0)
    assert await storage.reserve_budget(key, 1, 1000, clock(), clock() + 3600) == BudgetResult(True, 999)


async def test_settling_charges_what_was_spent_and_frees_the_rest(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    now, key = clock(), "budget:{key:k1}:day"
    assert (await storage.reserve_budget(key, 600, 1000, now, now + 3600)).allowed
    assert (await storage.reserve_budget(key, 300, 1000, now, now + 3600)).remaining == 100
    settled = await storage.settle_budget(key, 600, 250, 1000, now, now + 3600)
    assert settled == BudgetSettlement(250, 250, 300)
    assert await storage.settle_budget(key, 300, 0, 1000, now, now + 3600) == BudgetSettlement(0, 250, 0)
    assert await storage.reserve_budget(key, 750, 1000, now, now + 3600) == BudgetResult(True, 0)
    refused = await storage.reserve_budget(key, 1, 1000, now, now + 3600)
    assert (refused.allowed, refused.remaining) == (False, 0)


async def test_overshoot_is_bounded_by_one_reservation(storage: LimiterStorage, clock: FakeClock) -> None:
    now, key = clock(), "budget:{key:k1}:day"
    for amount in (400, 400, 200):
        assert (await storage.reserve_budget(key, amount, 1000, now, now + 3600)).allowed
    # Each call spends far more than it reserved (a prompt estimate that fell short).
    first = await storage.settle_budget(key, 400, 900, 1000, now, now + 3600)
    assert first == BudgetSettlement(800, 800, 600)  # up to limit + its reservation
    second = await storage.settle_budget(key, 400, 900, 1000, now, now + 3600)
    assert second == BudgetSettlement(400, 1200, 200)  # only its reservation: no room left
    third = await storage.settle_budget(key, 200, 1000, 1000, now, now + 3600)
    assert third == BudgetSettlement(200, 1400, 0)
    assert third.used <= 1000 + 400  # never more than one reservation over the limit
    refused = await storage.reserve_budget(key, 1, 1000, now, now + 3600)
    assert (refused.allowed, refused.remaining) == (False, 0)


async def test_settling_after_the_reset_changes_nothing(storage: LimiterStorage, clock: FakeClock) -> None:
    now, key = clock(), "budget:{key:k1}:day"
    assert (await storage.reserve_budget(key, 500, 1000, now, now + 60)).allowed
    clock.advance(61.0)
    assert await storage.settle_budget(key, 500, 500, 1000, clock(), now + 60) == BudgetSettlement(0, 0, 0)
    tomorrow = "budget:{key:k1}:tomorrow"
    read = await storage.settle_budget(tomorrow, 0, 0, 1000, clock(), clock() + 60)
    assert read == BudgetSettlement(0, 0, 0)  # reading writes nothing


async def test_a_settlement_whose_reservation_was_lost_still_charges(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    # The state vanished (a Redis restart, a fallback storage): what was spent is still counted.
    now, key = clock(), "budget:{key:k1}:day"
    assert await storage.settle_budget(key, 300, 120, 1000, now, now + 3600) == BudgetSettlement(120, 120, 0)
    assert (await storage.reserve_budget(key, 880, 1000, now, now + 3600)).allowed


async def test_concurrent_reservations_never_hold_more_than_the_budget(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    now, key = clock(), "budget:{key:k1}:day"
    results = await asyncio.gather(
        *(storage.reserve_budget(key, 100, 300, now, now + 3600) for _ in range(12))
    )
    assert sum(r.allowed for r in results) == 3
    assert await storage.settle_budget(key, 0, 0, 300, now, now + 3600) == BudgetSettlement(0, 0, 300)


# -- admission (limits, budget and slots together) ------------------------------------------------

MESSAGES = Rate.parse("2/minute")
SLOTS = ("slots:{sessions}:key:k1", "slots:{sessions}:total")


def limit_calls(*identities: str) -> list[LimitCall]:
    return [
        LimitCall(identity, f"b{i}", MESSAGES.interval, MESSAGES.tolerance)
        for i, identity in enumerate(identities)
    ]


async def test_an_admission_decides_limits_then_reserves_and_renews(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    now, key = clock(), "budget:{key:k1}:day"
    await storage.acquire_slots(SLOTS, (5, 5), "s1", now, now + 60)
    renewal = SlotRenewal(SLOTS, "s1", now + 600)
    calls = limit_calls("user:u1", "key:k1", "user:u1")
    admitted = await storage.admit(calls, BudgetCall(key, 600, 1000, now + 3600), renewal, now, NO_BLOCKS)
    assert [d is not None and d.allowed for d in admitted.decisions] == [True, True, True]
    assert admitted.decisions[0] is not None and admitted.decisions[0].remaining == 1
    assert (admitted.budget, admitted.renewed, admitted.refused) == (BudgetResult(True, 400), True, None)
    clock.advance(100.0)  # the slot was renewed: it outlives its first expiry
    assert await storage.count_slots(SLOTS[0], clock()) == 1


async def test_a_refused_limit_holds_no_budget(storage: LimiterStorage, clock: FakeClock) -> None:
    now = clock()
    budget = BudgetCall("budget:{key:k1}:day", 100, 1000, now + 3600)
    for identities in (("key:k1", "user:u1"), ("user:u1", "key:k1")):
        await storage.admit(limit_calls(*identities), None, None, now, NO_BLOCKS)
        await storage.admit(limit_calls(*identities), None, None, now, NO_BLOCKS)
    # Every bucket is empty now: refused in the budget's own slot and in another one alike.
    for identities in (("key:k1", "user:u1"), ("user:u1", "key:k1")):
        refused = await storage.admit(limit_calls(*identities), budget, None, now, NO_BLOCKS)
        assert refused.refused == 0 and refused.budget is not None and not refused.budget.allowed
    assert await storage.settle_budget(budget.key, 0, 0, 1000, now, now + 3600) == BudgetSettlement(0, 0, 0)


async def test_an_identity_stops_at_its_first_refusal(storage: LimiterStorage, clock: FakeClock) -> None:
    now = clock()
    tight = LimitCall("user:u1", "tight", 60.0, 0.0)
    loose = LimitCall("user:u1", "loose", MESSAGES.interval, MESSAGES.tolerance)
    await storage.admit([tight], None, None, now, NO_BLOCKS)
    refused = await storage.admit([tight, loose], None, None, now, NO_BLOCKS)
    assert refused.refused == 0 and refused.decisions[1] is None
    # The loose bucket was not spent by the refused admission.
    assert (
        await storage.decide("user:u1", "loose", now, MESSAGES.interval, MESSAGES.tolerance, 1, NO_BLOCKS)
    ).remaining == 1


async def test_concurrent_admissions_never_hold_more_than_the_budget(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    now, key = clock(), "budget:{key:k1}:day"
    wide = [LimitCall("key:k1", "wide", 0.001, 1.0)]
    results = await asyncio.gather(
        *(storage.admit(wide, BudgetCall(key, 100, 300, now + 3600), None, now, NO_BLOCKS) for _ in range(12))
    )
    assert sum(r.budget is not None and r.budget.allowed for r in results) == 3
    assert await storage.settle_budget(key, 0, 0, 300, now, now + 3600) == BudgetSettlement(0, 0, 300)
