# SPDX-License-Identifier: Apache-2.0
"""Adversarial suffixes: the token soup that GCG-style attacks append to a harmful request.

An optimizer searching for a suffix that makes a model comply produces text like
``feels________"=> weird versus "[/ifferentINSTMvc] Hence since Grace Clement ((FI BY'$og``:
brackets that never close, words glued to markup, case changing inside words. The detector
reads only the last `TAIL` characters of the text (constant work per text) and counts such
signals; code a user pastes is rarely unbalanced and rarely glues markup to prose, so several
signals are required together, unbalanced brackets among them.
"""

from __future__ import annotations

import re

from bastion.guard.base import Category, Finding, ScanContext
from bastion.guard.normalize import Normalized

TAIL = 160
#: Signals needed (out of five), and the weights at that count and above it.
MIN_SIGNALS = 3
WEIGHT = 0.55
STRONG_WEIGHT = 0.75

_ODD = frozenset("[]{}()<>\\|$^=*~`_#@%+;")
# Single-class and literal-alternation patterns over at most TAIL characters.
_CAMEL = re.compile(r"[a-z][A-Z]")
_LETTER = re.compile(r"[A-Za-z]")
_MARKUP = re.compile(r"[\[\]{}()<>\\|$^=*~`\"]")
_GLUED = re.compile(
    r"\]\(|\{\[|\\\{|\$\(|<\?|\(\"|\"\[|\[\(|\)\]|\}\}|\{\{|\[\[|=\"|\"\$|\$\{|\]\]|\)\(|\}\(|\]\{"
    r"|`\[|\[`|\]`|`\)|\(`"
)


def suffix_signals(text: str) -> int:
    """How many of the five suffix signals the end of `text` shows (0 when its brackets balance)."""
    tail = text[-TAIL:]
    unbalanced = (
        abs(tail.count("[") - tail.count("]"))
        + abs(tail.count("(") - tail.count(")"))
        + abs(tail.count("{") - tail.count("}"))
    )
    if unbalanced == 0:
        return 0
    words = tail.split()
    odd = sum(1 for ch in tail if ch in _ODD) / len(tail)
    mixed = sum(1 for w in words if _LETTER.search(w) and _MARKUP.search(w)) / max(len(words), 1)
    return (
        (unbalanced >= 2)
        + (odd >= 0.04)
        + (mixed >= 0.08)
        + (_CAMEL.search(tail) is not None)
        + (len(_GLUED.findall(tail)) >= 2)
    )


class AdversarialSuffixDetector:
    """`jailbreak` evidence when a text ends in optimizer-made token soup."""

    name = "suffix"

    def detect(self, normalized: Normalized, context: ScanContext) -> list[Finding]:
        signals = suffix_signals(normalized.clean)
        if signals < MIN_SIGNALS:
            return []
        weight = STRONG_WEIGHT if signals > MIN_SIGNALS else WEIGHT
        return [Finding(Category.jailbreak, weight, f"adversarial-suffix:{signals}")]
