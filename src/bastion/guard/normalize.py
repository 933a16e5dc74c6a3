# SPDX-License-Identifier: Apache-2.0
"""Normalization that runs before any check, on input and on model output alike.

Two results come out of one text:

- the *clean* text, which is what Bastion passes on: NFKC, no control, zero-width, invisible or
  Unicode tag characters, no bidi overrides, line endings unified. Visible characters stay as the
  user typed them (a Cyrillic word stays Cyrillic).
- the *detection views*, which only detectors see: lower case, whitespace folded to single
  spaces, and a second view where homoglyphs (Cyrillic and Greek lookalikes, small capitals) are
  folded to the Latin letters they imitate, leetspeak digits to letters, and words spelled out
  letter by letter (``i g n o r e``, ``i.g.n.o.r.e``) joined back together.

Unicode tag characters (U+E0020..U+E007E) are invisible copies of ASCII: an attacker hides a
whole instruction in them. They are removed from the clean text and their ASCII is returned as
`hidden`, for the detectors to scan as well.

The patterns here are single character classes (stdlib `re`): a class has no alternation and no
nested repetition, so the matcher looks at each character once. Everything else is `str`
methods and `str.translate`, linear by construction.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import re2

# Control characters except tab, newline and carriage return; C1 controls; soft hyphen; combining
# grapheme joiner; Arabic letter mark; Hangul fillers; Khmer invisible vowels; Mongolian variation
# selectors and vowel separator; zero-width space/joiners and LRM/RLM; bidi embeddings and
# overrides; word joiner, invisible operators and bidi isolates; braille blank; variation
# selectors; BOM; interlinear annotation; musical formatting; tags and variation selectors
# supplement.
_INVISIBLE_CLASS = (
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\ufff0-\ufffb\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
_TAG_CLASS = "[\U000e0000-\U000e007f]"
_BIDI_CLASS = "[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]"
# Line separators NFKC leaves alone.
_NEWLINES = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\x85": "\n"})
# Leetspeak is ASCII to ASCII, so it runs as `bytes.translate` over UTF-8 (every byte of a
# multi-byte character is >= 0x80 and left alone): a C loop, where `str.translate` with a dict
# costs a lookup per character.
_LEET = bytes.maketrans(b"0134579@$!", b"oieastgasi")


@dataclass(frozen=True, slots=True)
class Normalized:
    """A text ready for the detectors."""

    clean: str
    lowered: str
    folded: str
    hidden: str = ""
    invisible: int = 0
    bidi: bool = False

    def views(self) -> tuple[str, ...]:
        """The distinct detection views, the plain lower-case one first."""
        return (self.lowered,) if self.folded == self.lowered else (self.lowered, self.folded)


@dataclass(frozen=True, slots=True)
class _Patterns:
    invisible: re.Pattern[str]
    tags: re.Pattern[str]
    bidi: re.Pattern[str]
    leet_hint: re.Pattern[str]
    spelled: object  # an re2 pattern: google-re2 has no type information


class Normalizer:
    """Built once (it loads the confusables table); `normalize` is then pure and thread-safe."""

    def __init__(self, confusables: Mapping[int, str] | None = None) -> None:
        table = dict(confusables) if confusables is not None else load_confusables()
        self._fold = str.maketrans({chr(cp): letter for cp, letter in table.items()})
        # `str.translate` costs a dict lookup per character: fold only texts that need it.
        self._has_confusable = re.compile("[" + "".join(re.escape(chr(cp)) for cp in sorted(table)) + "]")
        self._patterns = _Patterns(
            invisible=re.compile(_INVISIBLE_CLASS),
            tags=re.compile(_TAG_CLASS),
            bidi=re.compile(_BIDI_CLASS),
            # a letter next to a digit or sign that leetspeak uses for a letter
            leet_hint=re.compile(r"[a-z][0134579@$!]+[a-z]"),
            # four or more single letters separated by one space, dot, dash, underscore or star
            spelled=re2.compile(r"\b(?:[a-z][ ._*\-]){3,}[a-z]\b"),
        )

    def strip_invisible(self, text: str) -> str:
        """Only the removal of invisible characters (for streamed chunks, which are not stripped)."""
        if self._patterns.invisible.search(text) is None:
            return text
        return self._patterns.invisible.sub("", text)

    def normalize(self, text: str) -> Normalized:
        p = self._patterns
        hidden = ""
        invisible = 0
        bidi = False
        if text.isascii():
            if p.invisible.search(text) is not None:
                text, invisible = p.invisible.subn("", text)
            clean = _unify_newlines(text).strip()
            lowered = " ".join(clean.lower().split())
            folded = lowered
        else:
            if p.invisible.search(text) is not None:
                if p.tags.search(text) is not None:
                    hidden = _tag_payload(text)
                bidi = p.bidi.search(text) is not None
                text, invisible = p.invisible.subn("", text)
            clean = _unify_newlines(unicodedata.normalize("NFKC", text)).strip()
            # NFKC may itself produce invisible characters from compatibility forms.
            clean = p.invisible.sub("", clean)
            lowered = " ".join(clean.casefold().split())
            folded = lowered
            if self._has_confusable.search(clean) is not None:
                folded = " ".join(clean.translate(self._fold).casefold().split())
        if p.leet_hint.search(folded) is not None:
            folded = folded.encode("utf-8").translate(_LEET).decode("utf-8")
        if p.spelled.search(folded) is not None:  # type: ignore[attr-defined]
            folded = p.spelled.sub(_join_spelled, folded)  # type: ignore[attr-defined]
        return Normalized(
            clean=clean, lowered=lowered, folded=folded, hidden=hidden, invisible=invisible, bidi=bidi
        )


def _unify_newlines(text: str) -> str:
    # `str.replace` is a C loop; `str.translate` with a dict would cost a lookup per character.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\u2028" in text or "\u2029" in text:
        text = text.translate(_NEWLINES)
    return text


def _join_spelled(match: re.Match[str]) -> str:
    return "".join(ch for ch in match.group(0) if ch.isalpha())


def _tag_payload(text: str) -> str:
    return "".join(chr(ord(ch) - 0xE0000) for ch in text if 0xE0020 <= ord(ch) <= 0xE007E)


def fold_for_detection(text: str, confusables: Mapping[int, str] | None = None) -> str:
    """The folded detection view of one text (a convenience for tests and tools)."""
    return Normalizer(confusables).normalize(text).folded


@lru_cache(maxsize=1)
def _default_confusables() -> tuple[tuple[int, str], ...]:
    raw = resources.files("bastion.guard").joinpath("rules/confusables.txt").read_text(encoding="utf-8")
    return tuple(parse_confusables(raw).items())


def load_confusables() -> dict[int, str]:
    """The shipped confusables table (code point -> Latin letter)."""
    return dict(_default_confusables())


def parse_confusables(raw: str) -> dict[int, str]:
    table: dict[int, str] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].startswith("U+"):
            raise ValueError(f"confusables line {number}: expected 'U+XXXX letter'")
        table[int(parts[0][2:], 16)] = parts[1]
    return table
