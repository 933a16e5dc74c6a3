# SPDX-License-Identifier: Apache-2.0
"""A provider wrapper that counts model calls, their duration and their tokens (docs/metrics.md).

It wraps whatever ``build_provider`` returned, so chat sessions, voice chat and /v1 completions
are all counted in one place; services and the providers themselves know nothing of metrics.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bastion.llm.base import (
    ChatMessage,
    Completion,
    GenerationOptions,
    Provider,
    StreamChunk,
    StreamInterrupted,
    Transcription,
)
from bastion.observability.metrics import NullMetrics


class MeteredProvider:
    """``provider`` with each call recorded: ``ok``, ``error``, ``interrupted`` or ``abandoned`` (streams)."""

    def __init__(self, provider: Provider, metrics: NullMetrics) -> None:
        self.provider = provider
        self.metrics = metrics
        self.name = provider.name
        self.model = provider.model
        self.offline = provider.offline

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        started = time.perf_counter()
        try:
            completion = await self.provider.complete(messages, options)
        except BaseException:
            self.metrics.model_call(self.name, "error", time.perf_counter() - started)
            raise
        self.metrics.model_call(self.name, "ok", time.perf_counter() - started)
        usage = completion.usage
        self.metrics.model_tokens(self.name, prompt=usage.prompt_tokens, completion=usage.completion_tokens)
        return completion

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        started = time.perf_counter()
        outcome = "abandoned"  # a consumer that stops early (a client gone mid-stream) closes us
        try:
            async for chunk in self.provider.stream(messages, options):
                if chunk.usage is not None:
                    self.metrics.model_tokens(
                        self.name, prompt=chunk.usage.prompt_tokens, completion=chunk.usage.completion_tokens
                    )
                yield chunk
            outcome = "ok"
        except StreamInterrupted:
            outcome = "interrupted"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            self.metrics.model_call(self.name, outcome, time.perf_counter() - started)

    async def transcribe(self, audio: Path, *, filename: str, content_type: str) -> Transcription:
        started = time.perf_counter()
        outcome = "error"
        try:
            transcription = await self.provider.transcribe(
                audio, filename=filename, content_type=content_type
            )
            outcome = "ok"
        finally:
            self.metrics.model_call(self.name, outcome, time.perf_counter() - started)
        return transcription

    async def status(self) -> str:
        return await self.provider.status()

    async def aclose(self) -> None:
        await self.provider.aclose()
