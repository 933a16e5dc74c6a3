# SPDX-License-Identifier: Apache-2.0
"""Stateless completions (the /v1 endpoint): the model behind the same daily token budget as chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

from bastion.chat.repository import Owner
from bastion.chat.service import TokenBudgetExhausted, seconds_to_midnight
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
        self.budget = budget
        self.clock = clock

    async def _budget_left(self, owner: Owner) -> int:
        state = await self.budget.consume(owner.identity, 0)
        if not state.allowed or state.remaining == 0:
            raise TokenBudgetExhausted(retry_after=seconds_to_midnight(self.clock()))
        return state.remaining

    async def _spend(self, owner: Owner, left: int, usage: Usage) -> None:
        if left >= 0:
            await self.budget.consume(owner.identity, min(usage.total_tokens, left))

    async def complete(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> Completion:
        left = await self._budget_left(owner)
        completion = await self.provider.complete(messages, options)
        await self._spend(owner, left, completion.usage)
        return completion

    async def stream(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        left = await self._budget_left(owner)
        return self._stream(owner, left, messages, options)

    async def _stream(
        self, owner: Owner, left: int, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        produced: list[str] = []
        try:
            async for chunk in self.provider.stream(messages, options):
                produced.append(chunk.delta)
                if chunk.finish_reason is not None:
                    await self._spend(owner, left, chunk.usage or Usage.estimate(messages, "".join(produced)))
                yield chunk
        except StreamInterrupted as interrupted:
            await self._spend(owner, left, Usage.estimate(messages, interrupted.produced))
            raise UpstreamError("The model stream ended early") from None
