# SPDX-License-Identifier: Apache-2.0
"""Validation: empty, per-field length limits, excessive repetition."""

from __future__ import annotations

import random
import string

import pytest

from bastion.guard import Action, Category, Guard, GuardConfig, InjectionModel, ScanContext
from bastion.guard.base import Finding
from bastion.guard.validators import REPETITION_MIN_CHARS, REPETITION_SHARE, check_repetition


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n", "\u200b\u200b", "\u3000"])
def test_empty_or_whitespace_only_is_refused(guard: Guard, text: str) -> None:
    verdict = guard.scan_input(text)
    assert verdict.action is Action.block
    assert verdict.categories == (Category.empty,)


def test_length_limits_are_per_field(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(max_lengths={"message": 20, "journal": 100}), model=model)
    text = "a fine sentence, thirty chars"
    assert guard.scan_input(text).categories == (Category.too_long,)
    assert guard.scan_input(text, ScanContext(field="journal")).action is Action.allow
    # an unknown field falls back to the message limit
    assert guard.scan_input(text, ScanContext(field="transcript")).action is Action.block


def test_limits_come_from_settings_values() -> None:
    class Settings:
        max_message_length = 123
        max_journal_length = 456
        injection_action = "block"
        profanity_filter = False

    config = GuardConfig.from_settings(Settings())
    assert config.max_lengths["message"] == 123 and config.max_lengths["content"] == 123
    assert config.max_lengths["journal"] == 456
    assert config.injection_action == "block" and not config.profanity_filter


@pytest.mark.parametrize(
    "text",
    [
        "a" * 50,
        "!" * 30,
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
        "spam " * 40,
        "buy now " * 30,
        "hello there friend " * 20,
        "x y " * 30,
    ],
)
def test_excessive_repetition_is_refused(guard: Guard, text: str) -> None:
    verdict = guard.scan_input(text)
    assert verdict.action is Action.block
    assert verdict.categories == (Category.repetition,)


@pytest.mark.parametrize(
    "text",
    [
        "hmmmm",
        "Noooooo!",
        "I am so so so happy today, thank you thank you!",
        "The the cat sat on the mat with the other cat.",
        "ha" * 8,
    ],
)
def test_ordinary_emphasis_is_not_repetition(guard: Guard, text: str) -> None:
    assert Category.repetition not in guard.scan_input(text).categories


def _one_character_reference(lowered: str) -> bool:
    """The one-character check as written before it skipped texts with many distinct characters."""
    n = len(lowered) - lowered.count(" ")
    if n < REPETITION_MIN_CHARS:
        return False
    samples = lowered[:: max(1, len(lowered) // 64)]
    frequent = sorted(((samples.count(c), c) for c in set(samples) if c != " "), reverse=True)
    return any(
        2 * k >= len(samples) - samples.count(" ") and lowered.count(c) > REPETITION_SHARE * n
        for k, c in frequent[:2]
    )


def test_one_character_repetition_is_decided_as_by_counting() -> None:
    # texts around the 80% line, with a few spaces (fewer than the phrase check needs)
    rng = random.Random(16)
    for _ in range(4000):
        length = rng.randint(18, 300)
        alphabet = string.ascii_lowercase[: rng.randint(2, 26)]
        share = rng.uniform(0.6, 1.0)
        chars = [alphabet[0] if rng.random() < share else rng.choice(alphabet) for _ in range(length)]
        for _ in range(rng.randint(0, 4)):
            chars[rng.randrange(1, length - 1)] = " "
        text = "".join(chars)
        expected = _one_character_reference(text)
        assert (check_repetition(text) == Finding(Category.repetition, 1.0, "repetition:char")) == expected, (
            text
        )
