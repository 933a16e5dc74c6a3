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

Every chat message is normalized, so the common case is made cheap. The distinct non-ASCII
characters of a text are listed once (numpy over its code points) and each is classified once
per process (`char_kind`, cached): when all of them are ordinary visible letters, punctuation or
symbols (curly quotes, accents, emoji, "…"), the text is processed as UTF-8 bytes, where
`bytes.translate`, `bytes.lower` and `bytes.replace` are C loops that touch each byte once and
never a multi-byte character (whose bytes are all >= 0x80). Texts with invisible characters,
combining marks, homoglyphs or scripts whose normalization depends on neighbours take the
general path (NFKC over the whole text). `str.translate` with a dict is avoided: it costs a
dict lookup per character, about a millisecond on 10 KB.

Searches run on RE2 (linear time); the few stdlib `re` patterns are single character classes
(no alternation, no nested repetition), used only on texts that hold such characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from importlib import resources

import numpy as np
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
#: The ASCII members of the invisible class, for `bytes.translate(None, delete)`.
_ASCII_CONTROLS = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_ASCII_SPACES = bytes.maketrans(b"\t\n\r\x0b\x0c", b"     ")
_ASCII_BYTES = bytes(range(0x80))
_LOWER_SPACES = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ\t\n\r\x0b\x0c", b"abcdefghijklmnopqrstuvwxyz     "
)
# Line separators NFKC leaves alone.
_NEWLINES = ("\u2028", "\u2029", "\x85")
# Leetspeak is ASCII to ASCII, so it runs as `bytes.translate` over UTF-8.
_LEET = bytes.maketrans(b"0134579@$!", b"oieastgasi")
# A letter next to a digit or sign that leetspeak uses for a letter. "@" between letters counts only
# when the word after it ends without a dot: "p@ssword" is leetspeak, "sam@example.com" is an
# address (folding it would cost every e-mail a second pass of every rule set).
_LEET_HINT = rb"[a-z][0134579$!]+[a-z]|[a-z]@+[a-z]+(?:[^a-z.@]|$)"
# four or more single letters separated by one space, dot, dash, underscore or star
_SPELLED = rb"\b(?:[a-z][ ._*\-]){3,}[a-z]\b"
#: A text with more distinct non-ASCII characters than this takes the general path.
_MAX_DISTINCT = 256


class CharKind(IntEnum):
    """How a non-ASCII character may be handled without full Unicode normalization."""

    plain = 0  # NFKC-stable, lower case, visible, never composes with a neighbour
    cased = 1  # as plain, but case folding changes it
    ascii_compatible = 2  # NFKC makes it printable ASCII on its own ("…", fullwidth, no-break space)
    general = 3  # anything else: invisible, combining, whitespace, composing scripts


_INVISIBLE_RE = re.compile(_INVISIBLE_CLASS)
#: Categories whose NFKC-stable members never compose with a neighbour: letters with case,
#: punctuation, symbols, decimal digits. (Scripts like Hangul and Indic vowel signs do compose,
#: and they are `Lo`/`Mc`: they take the general path.)
_PLAIN_CATEGORIES = frozenset(
    {"Ll", "Lu", "Lt", "Nd", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So"}
)


@lru_cache(maxsize=16_384)
def char_kind(code: int) -> CharKind:
    """Classify one non-ASCII code point (cached: a process sees few distinct ones)."""
    ch = chr(code)
    if _INVISIBLE_RE.match(ch) is not None or unicodedata.combining(ch):
        return CharKind.general
    nfkc = unicodedata.normalize("NFKC", ch)
    if nfkc != ch:
        printable = nfkc.isascii() and nfkc.isprintable()
        return CharKind.ascii_compatible if printable else CharKind.general
    if ch.isspace() or unicodedata.category(ch) not in _PLAIN_CATEGORIES:
        return CharKind.general
    return CharKind.cased if ch.casefold() != ch else CharKind.plain


@dataclass(frozen=True, slots=True)
class Normalized:
    """A text ready for the detectors."""

    clean: str
    lowered: str
    folded: str
    hidden: str = ""
    invisible: int = 0
    bidi: bool = False
    #: the views as UTF-8, which RE2 scans without encoding them again (filled by the normalizer)
    lowered_utf8: bytes = field(default=b"", repr=False)
    folded_utf8: bytes = field(default=b"", repr=False)
    clean_utf8: bytes = field(default=b"", repr=False)

    def views(self) -> tuple[str, ...]:
        """The distinct detection views, the plain lower-case one first."""
        return (self.lowered,) if self.folded == self.lowered else (self.lowered, self.folded)

    def clean_bytes(self) -> bytes:
        """The clean text as UTF-8 (kept from normalization when it was done over bytes)."""
        return self.clean_utf8 or self.clean.encode("utf-8")

    def utf8_views(self) -> tuple[bytes, ...]:
        """`views()` as UTF-8."""
        lowered = self.lowered_utf8 or self.lowered.encode("utf-8")
        if self.folded == self.lowered:
            return (lowered,)
        return (lowered, self.folded_utf8 or self.folded.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class _Patterns:
    invisible: object  # re2 patterns: google-re2 has no type information
    tricks: object
    leet_hint: object
    spelled: object
    invisible_chars: re.Pattern[str]
    tags: re.Pattern[str]
    bidi: re.Pattern[str]


class Normalizer:
    """Built once (it loads the confusables table); `normalize` is then pure and thread-safe."""

    def __init__(self, confusables: Mapping[int, str] | None = None) -> None:
        table = dict(confusables) if confusables is not None else load_confusables()
        self._confusables = {chr(cp): letter for cp, letter in table.items()}
        self._confusable_codes = frozenset(table)
        self._patterns = _Patterns(
            invisible=re2.compile(_INVISIBLE_CLASS),
            tricks=re2.compile(_LEET_HINT + b"|" + _SPELLED),
            leet_hint=re2.compile(_LEET_HINT),
            spelled=re2.compile(_SPELLED),
            invisible_chars=_INVISIBLE_RE,
            tags=re.compile(_TAG_CLASS),
            bidi=re.compile(_BIDI_CLASS),
        )

    def strip_invisible(self, text: str) -> str:
        """Only the removal of invisible characters (for streamed chunks, which are not stripped)."""
        if text.isascii():
            data = text.encode("ascii")
            stripped = data.translate(None, _ASCII_CONTROLS)
            return text if len(stripped) == len(data) else stripped.decode("ascii")
        if self._patterns.invisible.search(text) is None:  # type: ignore[attr-defined]
            return text
        return self._patterns.invisible_chars.sub("", text)

    def normalize(self, text: str) -> Normalized:
        data = text.encode("utf-8")
        if len(data) == len(text):
            return self._bytewise(text, data, ())
        # Deleting every ASCII byte leaves the non-ASCII characters' whole UTF-8 sequences: a
        # short string to list the distinct ones from (numpy only when it is long).
        others = data.translate(None, _ASCII_BYTES).decode("utf-8")
        if len(others) <= _MAX_DISTINCT:
            listed = sorted({ord(ch) for ch in others})
        else:
            codes = np.frombuffer(others.encode("utf-32-le"), dtype=np.uint32)
            listed = np.unique(codes).tolist()
        if len(listed) <= _MAX_DISTINCT and self._confusable_codes.isdisjoint(listed):
            kinds = [(chr(code), char_kind(code)) for code in listed]
            if all(kind is not CharKind.general for _, kind in kinds):
                return self._bytewise(text, data, kinds)
        return self._general(text)

    def _bytewise(self, text: str, data: bytes, kinds: list[tuple[str, CharKind]] | tuple[()]) -> Normalized:
        """Texts whose non-ASCII characters are all plain, cased or ASCII-compatible (`data` is
        the text as UTF-8)."""
        cased = False
        original = data
        for ch, kind in kinds:
            if kind is CharKind.ascii_compatible:
                data = data.replace(ch.encode("utf-8"), unicodedata.normalize("NFKC", ch).encode("ascii"))
            cased = cased or kind is CharKind.cased
        # one pass gives the lower-case view with controls gone and whitespace as spaces; the
        # clean text needs a pass of its own only when there were controls to remove
        low = data.translate(_LOWER_SPACES, _ASCII_CONTROLS)
        invisible = len(data) - len(low)
        stripped = data.translate(None, _ASCII_CONTROLS) if invisible else data
        if b"\r" in stripped:
            stripped = stripped.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        stripped = stripped.strip()
        clean = text if stripped is original or stripped == original else stripped.decode("utf-8")
        lowered_bytes = fold_whitespace(clean.casefold().encode("utf-8")) if cased else _fold_spaces(low)
        lowered = lowered_bytes.decode("utf-8")
        folded_bytes, folded = self._fold_tricks(lowered_bytes, lowered)
        return Normalized(
            clean,
            lowered,
            folded,
            invisible=invisible,
            lowered_utf8=lowered_bytes,
            folded_utf8=folded_bytes,
            clean_utf8=stripped,
        )

    def _general(self, text: str) -> Normalized:
        p = self._patterns
        hidden = ""
        invisible = 0
        bidi = False
        if p.invisible.search(text) is not None:  # type: ignore[attr-defined]
            if p.tags.search(text) is not None:
                hidden = _tag_payload(text)
            bidi = p.bidi.search(text) is not None
            text, invisible = p.invisible_chars.subn("", text)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
            # NFKC may itself produce invisible characters from compatibility forms.
            if p.invisible.search(text) is not None:  # type: ignore[attr-defined]
                text = p.invisible_chars.sub("", text)
        clean = _unify_newlines(text).strip()
        lowered_bytes = _lower_and_fold(clean)
        lowered = lowered_bytes.decode("utf-8")
        # NFKC may have produced lookalikes (mathematical Greek letters): look after it.
        codes = np.frombuffer(clean.encode("utf-32-le"), dtype=np.uint32)
        distinct = np.unique(codes[codes >= 0x80])
        present = sorted(self._confusable_codes.intersection(distinct.tolist()))
        if present:
            swapped = clean
            for code in present:
                swapped = swapped.replace(chr(code), self._confusables[chr(code)])
            view = _lower_and_fold(swapped)
            folded_bytes, folded = self._fold_tricks(view, view.decode("utf-8"))
        else:
            folded_bytes, folded = self._fold_tricks(lowered_bytes, lowered)
        return Normalized(clean, lowered, folded, hidden, invisible, bidi, lowered_bytes, folded_bytes)

    def _fold_tricks(self, view: bytes, text: str) -> tuple[bytes, str]:
        """Leetspeak and spelled-out words folded (the view itself when it has neither)."""
        p = self._patterns
        if p.tricks.search(view) is None:  # type: ignore[attr-defined]
            return view, text
        if p.leet_hint.search(view) is not None:  # type: ignore[attr-defined]
            view = view.translate(_LEET)
        if p.spelled.search(view) is not None:  # type: ignore[attr-defined]
            view = _join_spelled(p.spelled, view)
        return view, view.decode("utf-8")


def fold_whitespace(data: bytes) -> bytes:
    """ASCII whitespace folded to single spaces and the ends stripped, over UTF-8 bytes."""
    return _fold_spaces(data.translate(_ASCII_SPACES))


def _fold_spaces(data: bytes) -> bytes:
    """Runs of spaces folded to one and the ends stripped.

    When some space follows another, one numpy mask: each byte is looked at a fixed number of
    times, however long the runs.
    """
    if b"  " in data:
        raw = np.frombuffer(data, dtype=np.uint8)
        space = raw == 0x20
        keep = np.ones(len(raw), dtype=bool)
        keep[1:] = ~(space[1:] & space[:-1])
        data = raw[keep].tobytes()
    return data.strip(b" ")


def _lower_and_fold(text: str) -> bytes:
    lowered = text.casefold()
    if "\u1680" in lowered:  # the one Unicode space NFKC keeps and `str.split` would fold
        lowered = lowered.replace("\u1680", " ")
    return fold_whitespace(lowered.encode("utf-8"))


def _unify_newlines(text: str) -> str:
    # `str.replace` is a C loop; `str.translate` with a dict would cost a lookup per character.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for separator in _NEWLINES:
        if separator in text:
            text = text.replace(separator, "\n")
    return text


def _join_spelled(pattern: object, view: bytes) -> bytes:
    # RE2's `sub` decodes offsets in Python per match; slicing bytes between matches does not.
    pieces: list[bytes] = []
    last = 0
    for match in pattern.finditer(view):  # type: ignore[attr-defined]
        start, end = match.span()
        pieces.append(view[last:start])
        pieces.append(bytes(ch for ch in view[start:end] if 0x61 <= ch <= 0x7A))
        last = end
    pieces.append(view[last:])
    return b"".join(pieces)


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
