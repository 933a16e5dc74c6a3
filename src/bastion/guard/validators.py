# SPDX-License-Identifier: Apache-2.0
"""Shape checks that refuse a text outright: empty, too long for its field, or one thing repeated.

Each check is a handful of C-level string operations (`len`, `str.count`), never a loop per
character in Python, so they cost microseconds on a 10 KB text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

from bastion.guard.base import Category, Finding

#: Field names and their default limits in characters (MAX_MESSAGE_LENGTH, MAX_JOURNAL_LENGTH, ...).
DEFAULT_LIMITS: Mapping[str, int] = MappingProxyType(
    {"message": 10_000, "journal": 50_000, "transcript": 50_000, "content": 10_000, "context": 100_000}
)
REPETITION_SHARE = 0.8
#: Below this many non-space characters a text is too short to call repetitive ("hmm", "ok!!").
REPETITION_MIN_CHARS = 20
_SAMPLES = 64


def length_limit(limits: Mapping[str, int], field: str) -> int:
    if field in limits:
        return limits[field]
    return limits.get("message", DEFAULT_LIMITS["message"])


def check_length(raw: str, limit: int) -> Finding | None:
    return Finding(Category.too_long, 1.0, f"length>{limit}") if len(raw) > limit else None


def check_empty(clean: str) -> Finding | None:
    return None if clean and not clean.isspace() else Finding(Category.empty, 1.0, "empty")


def check_repetition(lowered: str) -> Finding | None:
    """More than 80% one character, or one short token (or pair or triple of tokens) repeated."""
    compact = lowered.replace(" ", "")
    n = len(compact)
    if n < REPETITION_MIN_CHARS:
        return None
    # A character holding 80% of the text all but surely appears among evenly spaced samples;
    # only the two most frequent samples are counted over the whole text.
    step = max(1, n // _SAMPLES)
    for char, _ in Counter(compact[::step]).most_common(2):
        if compact.count(char) > REPETITION_SHARE * n:
            return Finding(Category.repetition, 1.0, "repetition:char")
    tokens = lowered.split(" ")
    if len(tokens) >= 6:
        middle = len(tokens) // 2
        for unit in (tokens[:1], tokens[:2], tokens[:3], tokens[middle : middle + 1]):
            phrase = " ".join(unit)
            # each repeat also takes the space after it
            covered = lowered.count(phrase) * (len(phrase) + 1)
            if len(phrase) <= 40 and covered > REPETITION_SHARE * len(lowered):
                return Finding(Category.repetition, 1.0, "repetition:token")
    return None
