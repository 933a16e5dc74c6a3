# SPDX-License-Identifier: Apache-2.0
"""Profanity screening: leetspeak, spacing, repeats; word boundaries; mental-health words."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.guard import Action, Category, Guard, GuardConfig, InjectionModel
from bastion.guard.profanity import ProfanityFilter, load_words

from .conftest import cases


@pytest.mark.parametrize(
    "text",
    [
        "what the fuck",
        "f u c k this",
        "f.u.c.k this",
        "fuuuuuck",
        "this is sh1t",
        "$hit happens",
        "you b!tch",
        "SHIT",
        "what a bullshit excuse",
        "fucking hell",
    ],
)
def test_profanity_is_flagged(guard: Guard, text: str) -> None:
    verdict = guard.scan_input(text)
    assert Category.profanity in verdict.categories
    assert verdict.action is Action.flag


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe is a town in Lincolnshire",
        "I need to assess the class",
        "The cockpit of the plane, and a cocktail afterwards",
        "Shiitake mushrooms are delicious",
        "as soon as possible",
        "It was spent on the dickens novels",
        "Therapist recommended I analyse my assumptions",
    ],
)
def test_word_boundaries_keep_innocent_words_clean(guard: Guard, text: str) -> None:
    assert Category.profanity not in guard.scan_input(text).categories


@pytest.mark.parametrize("text", [case["text"] for case in cases("benign.jsonl")])
def test_mental_health_and_tricky_benign_texts_pass(guard: Guard, text: str) -> None:
    verdict = guard.scan_input(text)
    assert verdict.action is Action.allow, verdict


def test_operator_extends_the_list_from_a_file_or_words(tmp_path: Path, model: InjectionModel) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# our list\nfrobnicate\n", encoding="utf-8")
    from_file = Guard(GuardConfig(profanity_words=words), model=model)
    from_list = Guard(GuardConfig(profanity_words=["zorkmid"]), model=model)
    assert Category.profanity in from_file.scan_input("you fr0bn1cate").categories
    assert Category.profanity in from_list.scan_input("z o r k m i d").categories
    assert Category.profanity not in from_list.scan_input("you frobnicate").categories


def test_mental_health_terms_cannot_be_added() -> None:
    words = load_words(["suicide", "kill myself", "depressed", "wibble"])
    assert "wibble" in words
    assert not {"suicide", "kill myself", "depressed"} & set(words)
    assert ProfanityFilter(words).matches("i want to kill myself, i am depressed") == []


def test_profanity_filter_off(model: InjectionModel) -> None:
    guard = Guard(GuardConfig(profanity_filter=False), model=model)
    assert guard.scan_input("what the fuck").action is Action.allow
