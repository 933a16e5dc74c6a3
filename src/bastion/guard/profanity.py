# SPDX-License-Identifier: Apache-2.0
"""Profanity screening (PROFANITY_FILTER) that sees through leetspeak, spacing and repeated letters.

Each word becomes one RE2 pattern: every letter may be written with its leetspeak stand-ins and
repeated ("fuuuck", "sh1t"), letters may be separated by one space, dot, dash, underscore or star
("f u c k", "f.u.c.k"), and a few endings are allowed. The match must start and end at a word
boundary, which is what keeps "Scunthorpe", "class", "assess" and "cockpit" clean.

Mental-health vocabulary is never profanity: people in distress must be able to say "I want to
kill myself" or "I've been cutting" and be heard, not filtered. Those terms are removed from any
word list, the operator's included.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import re2

from bastion.guard.base import Category, Finding, ScanContext
from bastion.guard.normalize import Normalized

MENTAL_HEALTH_TERMS = frozenset(
    {
        "suicide", "suicidal", "kill", "killing", "kill myself", "die", "dying", "death", "dead",
        "self-harm", "self harm", "selfharm", "cut", "cutting", "overdose", "depressed",
        "depression", "anxiety", "anxious", "panic", "trauma", "traumatized", "abuse", "abused",
        "hopeless", "worthless", "hate", "hurt", "harm", "bipolar", "schizophrenia", "ptsd",
        "eating disorder", "anorexia", "bulimia", "addiction", "relapse", "lonely", "crying",
        "rape", "raped", "assault", "assaulted", "grief", "mental illness",
    }
)  # fmt: skip

_LEET = {
    "a": "a4@",
    "b": "b8",
    "e": "e3",
    "g": "g9",
    "i": "i1!|",
    "l": "l1|",
    "o": "o0",
    "s": "s5$",
    "t": "t7+",
    "z": "z2",
}
_SEPARATOR = "[ ._*\\-]?"
_ENDINGS = "(?:s|es|ed|er|ers|ing|in|y|head|heads)?"


def word_pattern(word: str) -> str:
    """The RE2 pattern for one word (lower case letters; spaces inside become separators)."""
    parts = []
    for letter in word:
        if letter == " ":
            parts.append("[ ._*\\-]*")
            continue
        chars = _LEET.get(letter, letter)
        cls = re2.escape(chars) if len(chars) == 1 else "[" + "".join(re2.escape(c) for c in chars) + "]"
        parts.append(cls + "+")
    body = _SEPARATOR.join(part for part in parts)
    return f"(?:^|[^a-z0-9@$]){body}{_ENDINGS}(?:$|[^a-z0-9])"


def load_words(extra: str | Path | Iterable[str] | None = None) -> list[str]:
    """The shipped list plus the operator's: a file path (one word a line) or words."""
    raw = resources.files("bastion.guard").joinpath("rules/profanity.txt").read_text(encoding="utf-8")
    words = _parse(raw.splitlines())
    if isinstance(extra, str | Path):
        words += _parse(Path(extra).read_text(encoding="utf-8").splitlines())
    elif extra is not None:
        words += _parse(extra)
    return sorted(set(words) - MENTAL_HEALTH_TERMS)


def _parse(lines: Iterable[str]) -> list[str]:
    words = []
    for line in lines:
        word = " ".join(line.split("#", 1)[0].lower().split())
        if word:
            words.append(word)
    return words


class ProfanityFilter:
    """Detector for `profanity`; built once from a word list."""

    name = "profanity"

    def __init__(self, words: Sequence[str], *, score: float = 0.7) -> None:
        self.words = tuple(words)
        self._score = score
        options = re2.Options()
        options.max_mem = 64 << 20
        self._set = re2.Set.SearchSet(options)
        for word in self.words:
            self._set.Add(word_pattern(word))
        self._set.Compile()

    def matches(self, folded: str | bytes) -> list[str]:
        return [self.words[i] for i in self._set.Match(folded) or ()] if self.words else []

    def detect(self, normalized: Normalized, context: ScanContext) -> list[Finding]:
        hits = self.matches(normalized.folded_utf8 or normalized.folded)
        if not hits and normalized.folded != normalized.lowered:
            # the folded view translated leetspeak signs; the plain one keeps e.g. "$h1t" as typed
            hits = self.matches(normalized.lowered_utf8 or normalized.lowered)
        return [Finding(Category.profanity, self._score, f"profanity:{len(hits)}")] if hits else []
