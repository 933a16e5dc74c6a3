# SPDX-License-Identifier: Apache-2.0
"""The daily model-token budget as chat and /v1 spend it: check before the call, spend after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.db.types import utcnow
from bastion.errors import RateLimited
from bastion.llm.base import Usage
from bastion.ratelimit.quotas import TokenBudget


class TokenBudgetExhausted(RateLimited):
    code = "token_budget_exhausted"
    default_message = "The daily model token budget is used up"


def seconds_to_midnight(now: datetime) -> float:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


@dataclass(frozen=True, slots=True)
class Allowance:
    """What an owner may still spend today; ``left`` is -1 when no budget is configured."""

    owner: str
    left: int


class BudgetGuard:
    def __init__(self, budget: TokenBudget, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.budget = budget
        self.clock = clock

    async def check(self, owner: str) -> Allowance:
        """Refuse before the model is called (and before anything is stored) when nothing is left."""
        state = await self.budget.consume(owner, 0)
        if not state.allowed or state.remaining == 0:
            raise TokenBudgetExhausted(retry_after=seconds_to_midnight(self.clock()))
        return Allowance(owner, state.remaining)

    async def spend(self, allowance: Allowance, usage: Usage) -> None:
        # All-or-nothing spending would leave an overshooting reply unrecorded; spend what is left
        # instead, so the budget is used up and the next request is refused.
        if allowance.left >= 0:
            await self.budget.consume(allowance.owner, min(usage.total_tokens, allowance.left))
