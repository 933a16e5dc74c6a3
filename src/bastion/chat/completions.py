# SPDX-License-Identifier: Apache-2.0
"""Stateless completions (the /v1 endpoint): the model behind the same daily token budget as chat.

The caller's user messages arrive screened by the content guard (the route calls ``screen``);
the deployment's canary instruction goes first in the prompt, and replies are screened here, as
in chat: a leak is withheld and replaced (finish reason ``content_filter``, as OpenAI reports a
filtered reply), a flagged reply carries its categories.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from bastion.chat.budget import BudgetGuard
from bastion.chat.repository import Owner
from bastion.chat.screening import Screen
from bastion.errors import UpstreamError
from bastion.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    Provider,
    StreamInterrupted,
    Usage,
)

#: OpenAI's finish reason for a reply its content filter withheld.
CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class ScreenedCompletion:
    completion: Completion
    #: the guard's flag categories for the reply (the Content-Warning)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScreenedChunk:
    """A piece of a screened reply; the last one has ``finish_reason`` (and the warnings)."""

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None
    warnings: tuple[str, ...] = ()


class CompletionService:
    def __init__(
        self, *, provider: Provider, budget: BudgetGuard, screen: Screen, canary_prompt: str
    ) -> None:
        self.provider = provider
        self.budget = budget
        self.screen = screen
        self.canary_prompt = canary_prompt

    def _prompt(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        return [ChatMessage("system", self.canary_prompt), *messages]

    async def complete(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> ScreenedCompletion:
        prompt = self._prompt(messages)
        async with self.budget.completion(owner.identity, prompt, options) as meter:
            meter.calling()
            completion = await self.provider.complete(prompt, meter.options)
            meter.finish(completion.usage)
        reply = await self.screen.check_reply(completion.content)
        if reply.withheld:
            completion = replace(completion, finish_reason=CONTENT_FILTER)
        return ScreenedCompletion(replace(completion, content=reply.text), reply.warnings)

    async def stream(
        self, owner: Owner, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ScreenedChunk]:
        """The screened reply as chunks. A refused budget and errors before the first chunk raise
        from the first ``__anext__``; the reservation lives inside the stream, settled however it
        ends. The last chunk (with ``finish_reason``) carries the rest the guard held back, or the
        replacement of a withheld reply with finish reason ``content_filter``."""
        return self._stream(owner, self._prompt(messages), options)

    async def _stream(
        self, owner: Owner, prompt: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[ScreenedChunk]:
        async with self.budget.completion(owner.identity, prompt, options) as meter:
            screened = self.screen.reply_stream()
            meter.calling()
            try:
                async for chunk in self.provider.stream(prompt, meter.options):
                    released = ""
                    if chunk.delta:
                        meter.produced(chunk.delta)
                        released = screened.feed(chunk.delta)
                    if chunk.finish_reason is None:
                        if released:
                            yield ScreenedChunk(released)
                        continue
                    meter.finish(chunk.usage)
                    reply = await screened.finish()
                    yield ScreenedChunk(
                        released + reply.unsent,
                        finish_reason=CONTENT_FILTER if reply.withheld else chunk.finish_reason,
                        usage=chunk.usage,
                        warnings=reply.warnings,
                    )
            except StreamInterrupted:
                raise UpstreamError("The model stream ended early") from None
