# SPDX-License-Identifier: Apache-2.0
"""Stateless completions (the /v1 endpoint): the model behind the same daily token budget as chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from bastion.chat.budget import BudgetGuard
from bastion.chat.repository import Owner
from bastion.errors import UpstreamError
from bastion.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    Provider,
    StreamChunk,
    StreamInterrupted,
)


class CompletionService:
    def __init__(self, *, provider: Provider, budget: BudgetGuard) -> None:
        self.provider = provider
        self.budget = budget

    async def complete(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> Completion:
        async with self.budget.completion(owner.identity, messages, options) as meter:
            meter.calling()
            completion = await self.provider.complete(messages, meter.options)
            meter.finish(completion.usage)
        return completion

    async def stream(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        """The reply as chunks. A refused budget and errors before the first chunk raise from the
        first ``__anext__``; the reservation lives inside the stream, settled however it ends."""
        return self._stream(owner, messages, options)

    async def _stream(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        async with self.budget.completion(owner.identity, messages, options) as meter:
            meter.calling()
            try:
                async for chunk in self.provider.stream(messages, meter.options):
                    if chunk.delta:
                        meter.produced(chunk.delta)
                    if chunk.finish_reason is not None:
                        meter.finish(chunk.usage)
                    yield chunk
            except StreamInterrupted:
                raise UpstreamError("The model stream ended early") from None
