# SPDX-License-Identifier: Apache-2.0
"""Find encoded payloads (base64, hex, binary, URL escapes, Morse, ROT13, reversed text) and decode them.

Decoded text is scanned again by the same detectors: "aWdub3JlIGFsbCBwcmV2aW91cyBpbnN0cnVjdGlvbnM="
is flagged for what it says, not for looking like base64. The candidate patterns run on RE2;
decoding is bounded (at most `MAX_PAYLOADS` candidates, each at most `MAX_PAYLOAD_CHARS`), so a
text full of base64 costs no more than a bounded amount of extra scanning.
"""

from __future__ import annotations

import binascii
import codecs
from collections.abc import Callable
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
        # One RE2 pass finds every candidate, over the UTF-8 text encoded once (given a str, the
        # RE2 wrapper encodes it again for every search and maps offsets back in Python). Each
        # candidate is then tried with the decoders its alphabet allows.
        self._candidates = re2.compile(
            rb"(?:[01]{8} ?){6,}"
            rb"|[A-Za-z0-9+/_\-]{16,}={0,2}"
            rb"|(?:[0-9a-fA-F]{2}[ :]?){8,}"
            rb"|(?:\\x[0-9a-fA-F]{2}){6,}"
            rb"|(?:%[0-9a-fA-F]{2}){6,}"
            rb"|(?:[.\-]{1,6}(?: / | {1,3}|/)){5,}[.\-]{1,6}"
        )

    def payloads(self, clean: str | bytes, lowered: str) -> list[str]:
        """Readable texts hidden in `clean` (a str or its UTF-8) by an encoding, most likely first."""
        found: list[str] = []
        data = clean if isinstance(clean, bytes) else clean.encode("utf-8")
        for match in self._candidates.finditer(data):
            if len(found) >= MAX_PAYLOADS:
                return found
            # every matched byte is ASCII (the pattern is made of ASCII classes)
            token = match.group(0)[:MAX_PAYLOAD_CHARS].decode("ascii")
            if _plain_word(token):
                continue
            for decode in _decoders_for(token):
                text = decode(token)
                if text is not None and _readable(text):
                    found.append(text)
                    break
        if len(lowered) <= MAX_TRANSFORM_CHARS:
            found.append(codecs.encode(lowered, "rot13"))
            found.append(lowered[::-1])
        return found


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF :")
_BINARY_DIGITS = frozenset("01 ")


def _decoders_for(token: str) -> list[Callable[[str], str | None]]:
    if token[0] in ".-" and set(token) <= {".", "-", " ", "/"}:
        return [_from_morse]
    if set(token) <= _BINARY_DIGITS:
        return [_from_binary, _from_hex]
    if token.startswith("%"):
        return [_from_percent]
    if token.startswith("\\x"):
        return [_from_hex]
    if set(token) <= _HEX_DIGITS:
        return [_from_hex, _from_base64] if " " in token or ":" in token else [_from_base64, _from_hex]
    return [_from_base64]


def _plain_word(token: str) -> bool:
    """Lower-case letters joined by hyphens or underscores ("passive-aggressive",
    "read_task_from_jsonl"): no encoding of readable text looks like that (base64 of 16 or more
    characters has capitals or digits, hex of text has digits), so it is not decoded."""
    letters = token.replace("-", "").replace("_", "")
    return letters.isalpha() and letters.islower()


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


def _from_binary(token: str) -> str | None:
    bits = token.replace(" ", "")
    if len(bits) % 8:
        return None
    return _utf8(int(bits, 2).to_bytes(len(bits) // 8, "big"))


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
