# SPDX-License-Identifier: Apache-2.0
"""The budget guard: what a model call reserves, what it is charged however it ends, fail modes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from bastion.chat.budget import BudgetGuard, TokenBudgetExhausted
from bastion.errors import ServiceUnavailable, UpstreamError
from bastion.llm.base import ChatMessage, GenerationOptions, Usage, estimate_tokens
from bastion.ratelimit.policies import policy_table
from bastion.ratelimit.quotas import TokenBudget
from bastion.ratelimit.service import FailMode, RateLimiter
from bastion.ratelimit.storage import LimiterStorage, MemoryStorage, RedisStorage
from tests.conftest import SettingsFactory
from tests.support.clock import FakeClock
from tests.support.servers import free_port

PROMPT = [ChatMessage("system", "Be kind."), ChatMessage("user", "I feel tired today.")]
PROMPT_TOKENS = Usage.estimate(PROMPT, "").prompt_tokens
OWNER = "user:u1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 22, 23, 0, tzinfo=UTC).timestamp())


def guard_on(
    make_settings: SettingsFactory,
    clock: FakeClock,
    *,
    per_day: int | None = 1000,
    storage: LimiterStorage | None = None,
    fail_mode: FailMode = "closed",
) -> BudgetGuard:
    limiter = RateLimiter(
        storage=storage or MemoryStorage(),
        policies=policy_table(make_settings()),
        clock=clock,
        fail_mode=fail_mode,
    )
    return BudgetGuard(
        TokenBudget(limiter, per_day=per_day), max_completion_tokens=100, transcription_tokens_per_mb=1000
    )


async def used(guard: BudgetGuard) -> tuple[int, int]:
    today = await guard.budget.today(OWNER)
    assert today is not None
    return today.used, today.reserved


async def test_a_call_reserves_its_prompt_and_the_completion_cap(
    make_settings: SettingsFactory, clock: FakeClock
) -> None:
    guard = guard_on(make_settings, clock)
    for wanted, cap in ((None, 100), (30, 30), (5000, 100)):
        async with guard.completion(OWNER, PROMPT, GenerationOptions(max_tokens=wanted)) as meter:
            assert meter.options.max_tokens == cap
            assert meter.reserved == PROMPT_TOKENS + cap
            assert await used(guard) == (0, PROMPT_TOKENS + cap)
    assert await used(guard) == (0, 0)  # never called the model: nothing charged


async def test_a_refusal_says_when_the_budget_resets(
    make_settings: SettingsFactory, clock: FakeClock
) -> None:
    guard = guard_on(make_settings, clock, per_day=PROMPT_TOKENS + 99)
    with pytest.raises(TokenBudgetExhausted) as refused:
        async with guard.completion(OWNER, PROMPT, GenerationOptions()):
            pytest.fail("a refused call must not run")
    assert refused.value.retry_after == pytest.approx(3600.0)  # midnight UTC
    assert await used(guard) == (0, 0)


async def test_what_each_ending_is_charged(make_settings: SettingsFactory, clock: FakeClock) -> None:
    guard = guard_on(make_settings, clock, per_day=100_000)
    async with guard.completion(OWNER, PROMPT, GenerationOptions()) as meter:
        meter.calling()
        meter.finish(Usage(40, 60))
    assert await used(guard) == (100, 0)  # the reported usage, even past the estimate

    with pytest.raises(UpstreamError):
        async with guard.completion(OWNER, PROMPT, GenerationOptions()) as meter:
            meter.calling()
            raise UpstreamError()
    assert await used(guard) == (100, 0)  # the model failed before giving anything

    with pytest.raises(asyncio.CancelledError):
        async with guard.completion(OWNER, PROMPT, GenerationOptions()) as meter:
            meter.calling()
            meter.produced("It sounds")
            meter.produced(" hard.")
            raise asyncio.CancelledError()  # the client hung up
    hung_up = PROMPT_TOKENS + estimate_tokens("It sounds hard.")
    assert await used(guard) == (100 + hung_up, 0)

    async with guard.completion(OWNER, PROMPT, GenerationOptions()) as meter:
        meter.calling()
        meter.produced("Hello")
        meter.finish(None)  # the upstream reported no usage: estimated
    assert await used(guard) == (100 + hung_up + PROMPT_TOKENS + 1, 0)


async def test_transcription_is_priced_by_size(make_settings: SettingsFactory, clock: FakeClock) -> None:
    guard = guard_on(make_settings, clock, per_day=1500)
    assert guard.transcription_cost(1) == 1
    assert guard.transcription_cost(1024 * 1024) == 1000
    async with guard.transcription(OWNER, 1024 * 1024) as meter:
        meter.calling()
        meter.finish_at(meter.reserved)
    assert await used(guard) == (1000, 0)
    with pytest.raises(TokenBudgetExhausted):
        async with guard.transcription(OWNER, 1024 * 1024):
            pytest.fail("a refused transcription must not run")


async def test_no_budget_still_caps_the_completion(make_settings: SettingsFactory, clock: FakeClock) -> None:
    guard = guard_on(make_settings, clock, per_day=None)
    async with guard.completion(OWNER, PROMPT, GenerationOptions()) as meter:
        assert meter.options.max_tokens == 100
        meter.calling()
        meter.finish(Usage(10**6, 10**6))
    assert await guard.budget.today(OWNER) is None


@pytest.fixture
async def unreachable() -> RedisStorage:
    return RedisStorage(Redis.from_url(f"redis://127.0.0.1:{free_port()}"), owns_client=True)


async def test_fail_closed_refuses_the_call_with_503(
    make_settings: SettingsFactory, clock: FakeClock, unreachable: RedisStorage
) -> None:
    guard = guard_on(make_settings, clock, storage=unreachable, fail_mode="closed")
    with pytest.raises(ServiceUnavailable):
        async with guard.completion(OWNER, PROMPT, GenerationOptions()):
            pytest.fail("the call must not run unbudgeted")
    await unreachable.aclose()


async def test_fail_open_budgets_in_process_and_counts_it(
    make_settings: SettingsFactory, clock: FakeClock, unreachable: RedisStorage
) -> None:
    guard = guard_on(make_settings, clock, storage=unreachable, fail_mode="open")
    async with guard.completion(OWNER, PROMPT, GenerationOptions()) as meter:
        meter.calling()
        meter.finish(Usage(10, 20))
    assert await used(guard) == (30, 0)
    assert guard.budget.limiter.stats["fallback_calls"] >= 2
    await unreachable.aclose()
