# SPDX-License-Identifier: Apache-2.0
"""Stateless completions (the /v1 endpoint): the model behind the same daily token budget as chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from bastion.chat.budget import Allowance, BudgetGuard
from bastion.chat.repository import Owner
from bastion.db.types import utcnow
from bastion.errors import UpstreamError
from bastion.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    Provider,
    StreamChunk,
    StreamInterrupted,
    Usage,
)
from bastion.ratelimit.quotas import TokenBudget


class CompletionService:
    def __init__(
        self, *, provider: Provider, budget: TokenBudget, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.provider = provider
        self.budget = BudgetGuard(budget, clock=clock)

    async def complete(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> Completion:
        allowance = await self.budget.check(owner.identity)
        completion = await self.provider.complete(messages, options)
        await self.budget.spend(allowance, completion.usage)
        return completion

    async def stream(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        allowance = await self.budget.check(owner.identity)
        return self._stream(allowance, messages, options)

    async def _stream(
        self, allowance: Allowance, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        produced: list[str] = []
        try:
            async for chunk in self.provider.stream(messages, options):
                produced.append(chunk.delta)
                if chunk.finish_reason is not None:
                    await self.budget.spend(
                        allowance, chunk.usage or Usage.estimate(messages, "".join(produced))
                    )
                yield chunk
        except StreamInterrupted as interrupted:
            await self.budget.spend(allowance, Usage.estimate(messages, interrupted.produced))
            raise UpstreamError("The model stream ended early") from None
