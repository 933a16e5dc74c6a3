# SPDX-License-Identifier: Apache-2.0
"""``inspect`` and ``reset`` (the admin API's view of one identity), run on every backend."""

from __future__ import annotations

import pytest

from bastion.ratelimit.escalation import Escalation
from bastion.ratelimit.inspection import policy_state
from bastion.ratelimit.policies import Policy, PolicyRule, Scope
from bastion.ratelimit.storage import LimiterStorage
from tests.support.clock import FakeClock
from tests.unit.ratelimit.test_storage_contract import LOGIN, hit

IP = "ip:198.51.100.7"
BUCKETS = ("login", "refresh")
ESCALATING = Escalation(
    strike_window=600.0,
    penalty_cap=900.0,
    violation_window=600.0,
    violation_threshold=10,
    auth_failure_window=600.0,
    auth_failure_threshold=5,
    block_seconds=900.0,
)
RULE = PolicyRule(Policy.LOGIN, LOGIN, Scope.IP)


async def test_an_untouched_identity_holds_nothing(storage: LimiterStorage, clock: FakeClock) -> None:
    state = await storage.inspect(IP, BUCKETS, clock())
    assert state.buckets == {} and state.violations == 0 and state.auth_failures == 0
    assert state.block is None
    full = policy_state(RULE, None, clock())
    assert (full.remaining, full.tracked, full.retry_after_seconds) == (3, False, 0.0)


async def test_inspect_reads_what_decisions_spent_without_spending(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    await hit(storage, clock, identity=IP)
    await hit(storage, clock, identity=IP)
    now = clock()
    first = await storage.inspect(IP, BUCKETS, now)
    assert set(first.buckets) == {"login"}
    assert policy_state(RULE, first.buckets["login"], now).remaining == 1
    # Reading twice changes nothing: the next decision still has one request left.
    assert await storage.inspect(IP, BUCKETS, now) == first
    assert (await hit(storage, clock, identity=IP)).remaining == 0
    exhausted = await storage.inspect(IP, BUCKETS, clock())
    state = policy_state(RULE, exhausted.buckets["login"], clock())
    assert state.remaining == 0
    assert state.retry_after_seconds == pytest.approx(12.0)
    assert state.reset_seconds == pytest.approx(36.0)
    # Once the bucket is full again it is no longer reported.
    clock.advance(36.0)
    assert (await storage.inspect(IP, BUCKETS, clock())).buckets == {}


async def test_inspect_shows_penalties_counters_and_blocks(storage: LimiterStorage, clock: FakeClock) -> None:
    for _ in range(5):
        await hit(storage, clock, identity=IP, escalation=ESCALATING)
    assert not await storage.record_auth_failure(IP, clock(), ESCALATING)
    state = await storage.inspect(IP, BUCKETS, clock())
    assert state.violations == 2 and state.auth_failures == 1
    penalty = state.buckets["login"].penalty_until - clock()
    assert penalty >= 12.0  # escalated beyond the bucket's natural wait
    assert policy_state(RULE, state.buckets["login"], clock()).retry_after_seconds == pytest.approx(penalty)
    await storage.block(IP, clock(), clock() + 60, "manual")
    blocked = await storage.inspect(IP, BUCKETS, clock())
    assert blocked.block is not None and blocked.block.reason == "manual"


async def test_reset_refills_and_forgets_counters_but_keeps_the_block(
    storage: LimiterStorage, clock: FakeClock
) -> None:
    for _ in range(5):
        await hit(storage, clock, identity=IP, escalation=ESCALATING)
        await hit(storage, clock, identity=IP, bucket="refresh", escalation=ESCALATING)
    await hit(storage, clock, identity="ip:198.51.100.8")
    await storage.record_auth_failure(IP, clock(), ESCALATING)
    await storage.block(IP, clock(), clock() + 60, "manual")
    await storage.reset(IP, BUCKETS)
    state = await storage.inspect(IP, BUCKETS, clock())
    assert state.buckets == {} and state.violations == 0 and state.auth_failures == 0
    assert state.block is not None  # lifting a block is the blocklist's
    await storage.unblock(IP)
    assert [(await hit(storage, clock, identity=IP)).remaining for _ in range(3)] == [2, 1, 0]
    # Another identity's state is untouched.
    assert set((await storage.inspect("ip:198.51.100.8", BUCKETS, clock())).buckets) == {"login"}
    await storage.reset("ip:203.0.113.99", BUCKETS)  # nothing held: nothing to do, no error
