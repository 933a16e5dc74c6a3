# SPDX-License-Identifier: Apache-2.0
"""The token estimate's count without the pattern (ASCII text) is the pattern's count."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bastion.llm.base import ChatMessage, Usage, estimate_tokens

PATTERN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def by_pattern(text: str) -> int:
    return len(PATTERN.findall(text))


def test_every_ascii_character_alone_and_between_words() -> None:
    for code in range(128):
        char = chr(code)
        for text in (char, f"a{char}b", f"{char}{char}x", f"x {char} ", f"_{char}9"):
            assert estimate_tokens(text) == by_pattern(text), repr(text)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_any_ascii_text(text: str) -> None:
    assert estimate_tokens(text) == by_pattern(text)


@given(st.text(alphabet="ab_9 .,!?'\t\n\x1c\x0b"))
def test_ascii_text_dense_in_boundaries(text: str) -> None:
    assert estimate_tokens(text) == by_pattern(text)


@given(st.text())
def test_any_text(text: str) -> None:
    assert estimate_tokens(text) == by_pattern(text)


def test_known_counts_and_a_prompt() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("It sounds hard.") == 4
    assert estimate_tokens("don't -- stop!") == 7  # don ' t - - stop !
    assert estimate_tokens("naïve café, 東京") == by_pattern("naïve café, 東京")
    prompt = [ChatMessage("system", "Be kind."), ChatMessage("user", "hello there")]
    assert Usage.estimate(prompt, "ok then").prompt_tokens == 3 + 4 + 2 + 4
    assert Usage.estimate(prompt, "ok then").completion_tokens == 2
