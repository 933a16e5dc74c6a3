# SPDX-License-Identifier: Apache-2.0
"""The token budget when Redis stops while a model call is under way: the reply is never lost."""

from __future__ import annotations

import pytest

from bastion.chat.budget import BudgetGuard
from bastion.llm.base import ChatMessage, GenerationOptions, Usage
from tests.conftest import SettingsFactory
from tests.integration.chat.conftest import chat_app
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis
BUDGET = {"RATE_LIMIT_TOKEN_BUDGET_PER_DAY": 10_000, "LLM_MAX_COMPLETION_TOKENS": 40}


async def test_a_settlement_redis_cannot_take_keeps_the_reply(
    make_settings: SettingsFactory,
    dedicated_redis: RedisServer,
) -> None:
    settings = {**BUDGET, "REDIS_URL": dedicated_redis.url, "RATE_LIMIT_FAIL_MODE": "closed"}
    async with chat_app(make_settings, **settings) as (app, _http, _auth):
        guard = BudgetGuard(app.state.token_budget, max_completion_tokens=40)
        prompt = [ChatMessage("user", "hello")]
        async with guard.completion("user:u1", prompt, GenerationOptions()) as meter:
            meter.calling()
            dedicated_redis.stop()  # Redis goes away while the model answers
            meter.finish(Usage(5, 7))
        # No error escaped: the reservation stays charged where it is (closed), the reply is kept.
        assert app.state.limiter.stats["refused_unavailable"] >= 1
