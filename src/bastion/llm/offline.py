# SPDX-License-Identifier: Apache-2.0
"""The offline development model: deterministic, rule-based reflective listening with no network.

It exists so Bastion runs and is tested with no provider account. Its replies say what a good
listener says — name the feeling, reflect the words back, ask an open question — and the same input
always gets the same reply. Every response is marked ``offline`` so nobody mistakes it for a model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from bastion.errors import NotAvailable
from bastion.llm.base import ChatMessage, Completion, GenerationOptions, StreamChunk, Transcription, Usage

MODEL = "bastion-offline-1"

# Feeling words, grouped by the name the reply gives them.
_FEELINGS: dict[str, tuple[str, ...]] = {
    "anxious": (
        "anxious",
        "anxiety",
        "nervous",
        "worried",
        "worry",
        "worrying",
        "panic",
        "uneasy",
        "scared",
        "afraid",
    ),
    "sad": (
        "sad",
        "down",
        "depressed",
        "unhappy",
        "miserable",
        "heartbroken",
        "grief",
        "crying",
        "cry",
        "hopeless",
    ),
    "stressed": (
        "stressed",
        "stress",
        "overwhelmed",
        "pressure",
        "swamped",
        "burned out",
        "burnt out",
        "too much",
    ),
    "angry": ("angry", "mad", "furious", "annoyed", "irritated", "frustrated", "frustrating", "resent"),
    "lonely": ("lonely", "alone", "isolated", "left out", "nobody", "no one"),
    "tired": ("tired", "exhausted", "drained", "sleepy", "worn out", "fatigued"),
    "hopeful": ("hopeful", "optimistic", "looking forward", "excited", "eager"),
    "happy": ("happy", "glad", "great", "joy", "grateful", "thankful", "proud", "relieved", "good"),
    "confused": ("confused", "lost", "unsure", "uncertain", "don't know", "stuck", "torn"),
}

# First and second person swap, so "I feel my boss ignores me" reflects as "you feel your boss ignores you".
_REFLECT = {
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "am": "are",
    "i'm": "you're",
    "im": "you're",
    "i've": "you've",
    "i'll": "you'll",
    "i'd": "you'd",
    "we": "you",
    "our": "your",
    "us": "you",
    "you": "I",
    "your": "my",
    "yours": "mine",
    "yourself": "myself",
    "you're": "I'm",
    "are": "am",
    "was": "were",
}

_FEELING_OPENERS = (
    "It sounds like you're feeling {feeling}.",
    "I hear that you're feeling {feeling}.",
    "That sounds like it leaves you feeling {feeling}.",
)
_NEUTRAL_OPENERS = (
    "Thank you for sharing that.",
    "I'm listening.",
    "I appreciate you telling me this.",
)
_REFLECTIONS = (
    "You're saying {reflection}.",
    "So {reflection}.",
    "If I understand you, {reflection}.",
)
_QUESTIONS = (
    "What feels most important about this for you right now?",
    "How has this been affecting your day-to-day?",
    "What would help you feel a little more supported?",
    "When did you first notice feeling this way?",
    "What have you tried so far, and how did it go?",
)
_QUESTION_REPLIES = (
    "That's a thoughtful question. What's your own sense of it so far?",
    "I don't have a single answer, but I'd like to explore it with you. What makes you ask?",
)
_EMPTY = "I'm here whenever you want to share what's on your mind."
_WORD = re.compile(r"[A-Za-z']+|[^A-Za-z'\s]+")


def _pick(options: Sequence[str], seed: bytes, salt: str) -> str:
    digest = hashlib.sha256(salt.encode() + seed).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _feeling(text: str) -> str | None:
    lowered = f" {text.lower()} "
    for name, words in _FEELINGS.items():
        if any(re.search(rf"\b{re.escape(word)}\b", lowered) for word in words):
            return name
    return None


def _reflect(sentence: str) -> str:
    words = _WORD.findall(sentence.strip().rstrip(".!?"))
    swapped = [_REFLECT.get(word.lower(), word) for word in words[:40]]
    text = " ".join(swapped)
    text = re.sub(r"\s+([,;:])", r"\1", text)
    return text[:1].lower() + text[1:] if text else text


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip(), maxsplit=1)[0]


def reply_to(messages: Sequence[ChatMessage]) -> str:
    """The deterministic reply to a conversation (only the latest user message is considered)."""
    last = next((m.content for m in reversed(messages) if m.role == "user"), "").strip()
    if not last:
        return _EMPTY
    seed = hashlib.sha256(last.encode()).digest()
    if last.endswith("?"):
        return _pick(_QUESTION_REPLIES, seed, "question")
    feeling = _feeling(last)
    opener = (
        _pick(_FEELING_OPENERS, seed, "opener").format(feeling=feeling)
        if feeling
        else _pick(_NEUTRAL_OPENERS, seed, "neutral")
    )
    parts = [opener]
    reflection = _reflect(_first_sentence(last))
    if reflection and len(reflection.split()) >= 3:
        parts.append(_pick(_REFLECTIONS, seed, "reflect").format(reflection=reflection))
    parts.append(_pick(_QUESTIONS, seed, "question"))
    return " ".join(parts)


class OfflineProvider:
    """Provider protocol implementation that never touches the network."""

    name = "offline"
    model = MODEL
    offline = True

    async def complete(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> Completion:
        content = self._limited(reply_to(messages), options)
        return Completion(
            content=content,
            model=self.model,
            provider=self.name,
            usage=Usage.estimate(messages, content),
            offline=True,
        )

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamChunk]:
        content = self._limited(reply_to(messages), options)
        words = content.split(" ")
        for index, word in enumerate(words):
            yield StreamChunk(delta=word if index == 0 else f" {word}")
        yield StreamChunk(delta="", finish_reason="stop", usage=Usage.estimate(messages, content))

    async def transcribe(self, audio: Path, *, filename: str, content_type: str) -> Transcription:
        raise NotAvailable(
            "Transcription is not available with the offline model; configure LLM_PROVIDER=openai"
        )

    async def status(self) -> str:
        return "offline"

    async def aclose(self) -> None:
        return None

    @staticmethod
    def _limited(content: str, options: GenerationOptions) -> str:
        if options.max_tokens is None:
            return content
        return " ".join(content.split(" ")[: max(1, options.max_tokens)])
