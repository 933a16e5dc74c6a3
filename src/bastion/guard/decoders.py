# SPDX-License-Identifier: Apache-2.0
"""Find encoded payloads (base64, hex, URL escapes, Morse, ROT13, reversed text) and decode them.

Decoded text is scanned again by the same detectors: "aWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM="
is flagged for what it says, not for looking like base64. The candidate patterns run on RE2;
decoding is bounded (at most `MAX_PAYLOADS` candidates, each at most `MAX_PAYLOAD_CHARS`), so a
text full of base64 costs no more than a bounded amount of extra scanning.
"""

from __future__ import annotations

import binascii
import codecs
from urllib.parse import unquote

import re2

MAX_PAYLOADS = 8
MAX_PAYLOAD_CHARS = 4096
#: Short texts are also read reversed and in ROT13: cheap, and neither leaves a visible marker.
MAX_TRANSFORM_CHARS = 2048

_MORSE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g", "....": "h",
    "..": "i", ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n", "---": "o", ".--.": "p",
    "--.-": "q", ".-.": "r", "...": "s", "-": "t", "..-": "u", "...-": "v", ".--": "w", "-..-": "x",
    "-.--": "y", "--..": "z", "-----": "0", ".----": "1", "..---": "2", "...--": "3", "....-": "4",
    ".....": "5", "-....": "6", "--...": "7", "---..": "8", "----.": "9",
}  # fmt: skip


class PayloadDecoder:
    """Built once; `payloads` is pure and thread-safe."""

    def __init__(self) -> None:
        self._base64 = re2.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
        self._hex = re2.compile(r"(?:[0-9a-fA-F]{2}[ :]?){8,}|(?:\\x[0-9a-fA-F]{2}){6,}")
        self._percent = re2.compile(r"(?:%[0-9a-fA-F]{2}){6,}")
        self._morse = re2.compile(r"(?:[.\-]{1,6}(?: / | {1,3}|/)){5,}[.\-]{1,6}")
        self._any = re2.compile(
            r"[A-Za-z0-9+/_\-]{16,}|(?:[0-9a-fA-F]{2}[ :]?){8,}|\\x[0-9a-fA-F]{2}|%[0-9a-fA-F]{2}"
            r"|(?:[.\-]{1,6}(?: / | {1,3}|/)){5,}"
        )

    def payloads(self, clean: str, lowered: str) -> list[str]:
        """Readable texts hidden in `clean` by an encoding, most likely first."""
        found: list[str] = []
        if self._any.search(clean) is not None:
            for pattern, decode in (
                (self._base64, _from_base64),
                (self._hex, _from_hex),
                (self._percent, _from_percent),
                (self._morse, _from_morse),
            ):
                for match in pattern.finditer(clean):
                    if len(found) >= MAX_PAYLOADS:
                        return found
                    text = decode(match.group(0)[:MAX_PAYLOAD_CHARS])
                    if text is not None and _readable(text):
                        found.append(text)
        if len(lowered) <= MAX_TRANSFORM_CHARS:
            found.append(codecs.encode(lowered, "rot13"))
            found.append(lowered[::-1])
        return found


def _readable(text: str) -> bool:
    if len(text) < 6:
        return False
    letters = sum(1 for ch in text if ch.isalpha() or ch == " ")
    return " " in text.strip() and letters >= 0.75 * len(text)


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _from_base64(token: str) -> str | None:
    token = token.replace("-", "+").replace("_", "/").rstrip("=")
    token += "=" * (-len(token) % 4)
    try:
        return _utf8(binascii.a2b_base64(token))
    except (binascii.Error, ValueError):
        return None


def _from_hex(token: str) -> str | None:
    digits = token.replace("\\x", "").replace(" ", "").replace(":", "")
    try:
        return _utf8(bytes.fromhex(digits[: len(digits) // 2 * 2]))
    except ValueError:
        return None


def _from_percent(token: str) -> str | None:
    return unquote(token, errors="strict") if token else None


def _from_morse(token: str) -> str | None:
    words = []
    for word in token.replace(" / ", "/").split("/"):
        letters = [_MORSE.get(code) for code in word.split()]
        if not letters or None in letters:
            return None
        words.append("".join(letter for letter in letters if letter))
    return " ".join(words)
