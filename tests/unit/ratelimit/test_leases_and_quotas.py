# SPDX-License-Identifier: Apache-2.0
"""Concurrency leases and quotas over every storage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bastion.errors import RateLimited
from bastion.ratelimit.leases import ConcurrencyLimiter
from bastion.ratelimit.policies import policy_table
from bastion.ratelimit.quotas import SessionQuota, TokenBudget
from bastion.ratelimit.service import RateLimiter
from bastion.ratelimit.storage import LimiterStorage
from tests.conftest import SettingsFactory
from tests.support.clock import FakeClock


@pytest.fixture
def limiter(make_settings: SettingsFactory, storage: LimiterStorage, clock: FakeClock) -> RateLimiter:
    return RateLimiter(storage=storage, policies=policy_table(make_settings()), clock=clock)


async def test_leases_are_held_for_the_duration_and_released_however_it_ends(limiter: RateLimiter) -> None:
    voice = ConcurrencyLimiter(limiter, name="voice", limit=2, ttl=60.0)
    async with voice.hold("key:k1"), voice.hold("key:k1"):
        assert await voice.in_flight("key:k1") == 2
        with pytest.raises(RateLimited):
            async with voice.hold("key:k1"):
                pass
        assert await voice.in_flight("key:k2") == 0  # another key is unaffected
    assert await voice.in_flight("key:k1") == 0

    with pytest.raises(RuntimeError):
        async with voice.hold("key:k1"):
            raise RuntimeError("upload failed")
    assert await voice.in_flight("key:k1") == 0

    entered = asyncio.Event()

    async def upload() -> None:
        async with voice.hold("key:k1"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(upload())
    await entered.wait()
    assert await voice.in_flight("key:k1") == 1
    task.cancel()  # what a server does to a request whose client went away
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await voice.in_flight("key:k1") == 0


async def test_a_lease_of_a_dead_instance_expires(limiter: RateLimiter, clock: FakeClock) -> None:
    voice = ConcurrencyLimiter(limiter, name="voice", limit=1, ttl=30.0)
    orphan = await voice.acquire("key:k1")  # never released: its instance died
    assert orphan is not None
    assert await voice.acquire("key:k1") is None
    clock.advance(20.0)
    assert await voice.renew(orphan)  # a live holder may keep it longer
    clock.advance(25.0)
    assert await voice.acquire("key:k1") is None
    clock.advance(10.0)
    assert not await voice.renew(orphan)
    assert await voice.acquire("key:k1") is not None


def test_a_concurrency_limit_needs_sense() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimiter(None, name="x", limit=0, ttl=1.0)  # type: ignore[arg-type]


async def test_session_slots_per_key_and_in_total(limiter: RateLimiter, clock: FakeClock) -> None:
    quota = SessionQuota(limiter, per_owner=2, total=3, idle_ttl=600.0)
    assert (await quota.acquire("s1", owner="key:a")).acquired
    slot = await quota.acquire("s2", owner="key:a")
    assert (slot.acquired, slot.owner_active, slot.total_active) == (True, 2, 2)
    assert not (await quota.acquire("s3", owner="key:a")).acquired  # the key's cap
    assert (await quota.acquire("s4", owner="key:b")).acquired
    full = await quota.acquire("s5", owner=None)
    assert (full.acquired, full.owner_active, full.total_active) == (False, None, 3)  # the total cap
    await quota.release("s1", owner="key:a")
    assert await quota.active("key:a") == 1
    assert await quota.active() == 2
    assert (await quota.acquire("s3", owner="key:a")).acquired
    # Sessions that stay active keep their slots; abandoned ones free theirs after the idle TTL.
    clock.advance(500.0)
    assert await quota.touch("s2", owner="key:a")
    clock.advance(200.0)
    assert await quota.active("key:a") == 1
    assert not await quota.touch("s3", owner="key:a")
    assert await quota.active() == 1


async def test_the_daily_token_budget(limiter: RateLimiter, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 22, 23, 0, tzinfo=UTC).timestamp()
    budget = TokenBudget(limiter, per_day=1000)
    held = await budget.reserve("key:a", 700)
    assert (held.granted, held.remaining) == (True, 300)
    assert held.resets_at == datetime(2026, 11, 23, tzinfo=UTC).timestamp()
    refused = await budget.reserve("key:a", 400)
    assert (refused.granted, refused.remaining) == (False, 300)
    assert await budget.settle(refused, 400) is None  # nothing was held: nothing to settle
    assert (await budget.reserve("key:b", 400)).granted  # budgets are per key
    settled = await budget.settle(held, 250)  # the call spent less than it held
    assert settled is not None and (settled.charged, settled.used, settled.reserved) == (250, 250, 0)
    assert (await budget.reserve("key:a", 750)).remaining == 0
    clock.advance(3600.0)  # a new UTC day
    assert (await budget.reserve("key:a", 400)).remaining == 600
    today = await budget.today("key:a")
    assert today is not None and (today.used, today.reserved) == (0, 400)
    with pytest.raises(ValueError):
        await budget.reserve("key:a", -1)
    with pytest.raises(ValueError):
        await budget.settle(held, -1)


def test_the_budget_day_is_the_utc_date_at_every_instant(limiter: RateLimiter, clock: FakeClock) -> None:
    budget = TokenBudget(limiter, per_day=1000)
    midnight = datetime(2026, 12, 31, tzinfo=UTC).timestamp()
    # around midnights (a year's end, a leap day), and back again: the day is never stale
    instants = [midnight + offset for offset in (-86_400.5, -0.001, 0.0, 0.001, 86_399.999, -3.0)]
    instants += [datetime(2028, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC).timestamp(), 0.0, 1e10]
    for instant in instants:
        clock.now = instant
        day = datetime.fromtimestamp(instant, UTC)
        key, now, resets_at = budget._today("key:a")
        assert key == f"budget:{{key:a}}:{day:%Y-%m-%d}" and now == instant
        assert (
            resets_at == (datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)).timestamp()
        )


async def test_no_budget_means_unlimited(limiter: RateLimiter) -> None:
    budget = TokenBudget(limiter, per_day=None)
    result = await budget.reserve("key:a", 10**9)
    assert (result.granted, result.remaining) == (True, -1)
    assert await budget.settle(result, 10**9) is None
    assert await budget.today("key:a") is None
