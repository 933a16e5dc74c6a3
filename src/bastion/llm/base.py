# SPDX-License-Identifier: Apache-2.0
"""The provider protocol and the values that cross it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def _ascii_class(char: str) -> int:
    """How the pattern sees a character: part of a word (w), a space, or a token alone (p)."""
    if re.fullmatch(r"\w", char):
        return ord("w")
    return ord(" ") if re.fullmatch(r"\s", char) else ord("p")


_ASCII_CLASSES = bytes(_ascii_class(chr(code)) for code in range(256))


def estimate_tokens(text: str) -> int:
    """A provider-independent token estimate (words and punctuation), used when upstream reports none.

    ASCII text (most of a prompt, counted again for every message of a conversation) is counted
    with C loops instead of the pattern: a word starts where a word character follows anything
    else, and every other non-space character is a token of its own; the counts are the
    pattern's (tests compare them).
    """
    if not text.isascii():
        return len(_TOKEN.findall(text))
    classes = text.encode("ascii").translate(_ASCII_CLASSES)
    words = classes.count(b" w") + classes.count(b"pw") + classes.startswith(b"w")
    return words + classes.count(b"p")


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def estimate(cls, messages: Sequence[ChatMessage], completion: str) -> Usage:
        return cls(sum(estimate_tokens(m.content) + 4 for m in messages), estimate_tokens(completion))


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    model: str
    provider: str
    usage: Usage
    finish_reason: str = "stop"
    offline: bool = False


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed reply; the last one has ``finish_reason`` and, when known, ``usage``."""

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    provider: str


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    max_tokens: int | None = None
    temperature: float | None = None


class Provider(Protocol):
    """A chat model. Implementations raise the ``Upstream*`` errors of ``bastion.errors``, never httpx's."""

    name: str
    model: str
    offline: bool

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        """The whole reply at once."""
        ...

    def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        """The reply as it is produced. A failure after the first chunk raises ``StreamInterrupted``."""
        ...

    async def transcribe(self, audio: Path, *, filename: str, content_type: str) -> Transcription:
        """Speech to text for an uploaded file."""
        ...

    async def status(self) -> str:
        """For readiness: ``offline``, or the breaker state (``closed``, ``open``, ``half_open``)."""
        ...

    async def aclose(self) -> None: ...


class StreamInterrupted(Exception):
    """The upstream stream broke after some of the reply was delivered; what arrived is kept."""

    def __init__(self, produced: str) -> None:
        self.produced = produced
        super().__init__("the model stream ended early")
