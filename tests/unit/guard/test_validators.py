# SPDX-License-Identifier: Apache-2.0
"""Validation: empty, per-field length limits, excessive repetition."""

from __future__ import annotations

import pytest

from bastion.guard import Action, Category, Guard, GuardConfig, InjectionModel, ScanContext


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
