# SPDX-License-Identifier: Apache-2.0
"""Shape checks that refuse a text outright: empty, too long for its field, or one thing repeated.

Each check is a handful of C-level string operations (`len`, `str.count`), never a loop per
character in Python, so they cost microseconds on a 10 KB text.
"""

from __future__ import annotations

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
    spaces = lowered.count(" ")
    n = len(lowered) - spaces
    if n < REPETITION_MIN_CHARS:
        return None
    # A character holding 80% of the text all but surely appears among evenly spaced samples;
    # only the two most frequent ones other than the space are counted over the whole text.
    step = max(1, len(lowered) // _SAMPLES)
    samples = lowered[::step]
    distinct = set(samples)
    distinct.discard(" ")
    # Each other distinct character takes at least one place: when that leaves no character room
    # for more than 80% of the text (an ordinary short message), none is counted.
    if n - (len(distinct) - 1) > REPETITION_SHARE * n:
        # (a Counter costs more than counting the few distinct characters of 64 samples directly)
        frequent = sorted(((samples.count(char), char) for char in distinct), reverse=True)
        for k, char in frequent[:2]:
            # a character far from a majority of the samples is not counted over the whole text
            if 2 * k >= len(samples) - samples.count(" ") and lowered.count(char) > REPETITION_SHARE * n:
                return Finding(Category.repetition, 1.0, "repetition:char")
    if spaces >= 5:
        # the first three tokens, without `split` copying the rest of the text
        ends = [lowered.find(" ")]
        ends += [lowered.find(" ", ends[0] + 1)]
        ends += [lowered.find(" ", ends[1] + 1)]
        tokens = [lowered[: ends[0]], lowered[ends[0] + 1 : ends[1]], lowered[ends[1] + 1 : ends[2]]]
        share = REPETITION_SHARE * len(lowered)
        # "t0 t1" and "t0 t1 t2" occur no more often than "t0": when even that many repeats could
        # not cover the text, the longer phrase is not counted
        first = lowered.count(tokens[0])
        for phrase in (" ".join(tokens[:k]) for k in (1, 2, 3)):
            if first * (len(phrase) + 1) > share and _covers(lowered, phrase, share):
                return Finding(Category.repetition, 1.0, "repetition:token")
        # the token around the middle of the text (no list of every token is built)
        middle = lowered.rfind(" ", 0, len(lowered) // 2) + 1
        end = lowered.find(" ", middle)
        if _covers(lowered, lowered[middle : end if end >= 0 else len(lowered)], share):
            return Finding(Category.repetition, 1.0, "repetition:token")
    return None


def _covers(lowered: str, phrase: str, share: float) -> bool:
    # each repeat also takes the space after it
    return 0 < len(phrase) <= 40 and lowered.count(phrase) * (len(phrase) + 1) > share
