# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import NotAvailable
from bastion.llm.base import ChatMessage, GenerationOptions
from bastion.llm.offline import MODEL, OfflineProvider, reply_to

OPTIONS = GenerationOptions()


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage("system", "You are a supportive coach."), ChatMessage("user", text)]


def test_same_input_same_reply_and_different_input_differs() -> None:
    first = reply_to(user("I feel anxious about my exam tomorrow."))
    assert first == reply_to(user("I feel anxious about my exam tomorrow."))
    assert first != reply_to(user("Work has been so stressful and I can't sleep."))


def test_names_the_feeling_and_reflects_pronouns() -> None:
    reply = reply_to(user("I feel anxious because my manager ignores me."))
    assert "anxious" in reply
    assert "your manager ignores you" in reply
    assert reply.rstrip().endswith("?")


@pytest.mark.parametrize(
    ("text", "feeling"),
    [
        ("I'm so lonely since I moved.", "lonely"),
        ("Honestly I'm exhausted all the time.", "tired"),
        ("I am furious with my brother.", "angry"),
        ("Everything feels overwhelmed and too much.", "stressed"),
    ],
)
def test_feelings(text: str, feeling: str) -> None:
    assert feeling in reply_to(user(text))


def test_questions_and_empty_input() -> None:
    from bastion.llm.offline import _QUESTION_REPLIES

    assert reply_to(user("Should I change jobs?")) in _QUESTION_REPLIES
    assert "here" in reply_to([ChatMessage("system", "x")])


def test_reply_considers_the_latest_user_message() -> None:
    history = [
        ChatMessage("user", "I am sad."),
        ChatMessage("assistant", "..."),
        ChatMessage("user", "I feel happy now."),
    ]
    assert "happy" in reply_to(history)


async def test_complete_is_marked_offline_with_usage() -> None:
    completion = await OfflineProvider().complete(user("I feel sad."), OPTIONS)
    assert completion.offline is True
    assert completion.provider == "offline" and completion.model == MODEL
    assert completion.usage.completion_tokens > 0 and completion.usage.prompt_tokens > 0


async def test_stream_reassembles_to_the_same_reply_and_ends_with_usage() -> None:
    provider = OfflineProvider()
    messages = user("My partner and I keep arguing and I'm frustrated.")
    chunks = [chunk async for chunk in provider.stream(messages, OPTIONS)]
    assert "".join(c.delta for c in chunks) == (await provider.complete(messages, OPTIONS)).content
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is not None
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_max_tokens_limits_the_reply() -> None:
    completion = await OfflineProvider().complete(user("I feel sad today."), GenerationOptions(max_tokens=3))
    assert len(completion.content.split(" ")) == 3


async def test_transcription_is_not_available_offline(tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    with pytest.raises(NotAvailable, match="not available with the offline model"):
        await OfflineProvider().transcribe(audio, filename="a.wav", content_type="audio/wav")
