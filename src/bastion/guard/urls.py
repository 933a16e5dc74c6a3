# SPDX-License-Identifier: Apache-2.0
"""Links in text: dangerous schemes neutralized, and an optional allow-list of domains.

`javascript:`, `vbscript:`, `data:`, `file:` and `blob:` links are replaced by a marker wherever a
client might render them as a link (a scheme directly followed by its payload; "JavaScript: the
good parts" is prose and stays). With an allow-list, http(s) links to other domains are replaced
too. The patterns run on RE2.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import re2

BLOCKED_MARKER = "[blocked link]"
REMOVED_MARKER = "[link removed]"


@dataclass(frozen=True, slots=True)
class UrlResult:
    text: str
    blocked: int


class UrlPolicy:
    """Built once; `apply` is pure and thread-safe."""

    def __init__(self, allowed_domains: Iterable[str] | None = None) -> None:
        self.allowed = (
            tuple(sorted({d.lower().strip(".") for d in allowed_domains if d.strip()}))
            if allowed_domains is not None
            else None
        )
        # scheme, optional spaces/tabs an attacker inserts ("java script:"), then a payload
        self._dangerous = re2.compile(
            r"(?i)\b(?:j\s*a\s*v\s*a\s*s\s*c\s*r\s*i\s*p\s*t|v\s*b\s*s\s*c\s*r\s*i\s*p\s*t|data|file|blob)"
            r"\s*:(?:[^\s\"'<>)\]]+)"
        )
        self._web = re2.compile(r"(?i)\bhttps?://[^\s\"'<>)\]]+")

    def apply(self, text: str, *, encoded: bytes | None = None) -> UrlResult:
        """Neutralize the links in `text`; `encoded` is the same text as UTF-8 when the caller has
        it (the search for links then skips encoding the text again)."""
        blocked = 0

        def neutralize(match: object) -> str:
            nonlocal blocked
            token = match.group(0)  # type: ignore[attr-defined]
            if token.split(":", 1)[1][:1].isspace():
                return str(token)
            blocked += 1
            return BLOCKED_MARKER

        # RE2's `sub` walks the text in Python even when nothing matches: search first, and only
        # when the text has the colon every link needs (a C loop, cheaper than one RE2 call).
        if ":" not in text:
            return UrlResult(text, 0)
        if self._dangerous.search(text if encoded is None else encoded) is not None:
            text = self._dangerous.sub(neutralize, text)
        if self.allowed is not None and self._web.search(text) is not None:

            def restrict(match: object) -> str:
                nonlocal blocked
                token = str(match.group(0))  # type: ignore[attr-defined]
                if self.host_allowed(token):
                    return token
                blocked += 1
                return REMOVED_MARKER

            text = self._web.sub(restrict, text)
        return UrlResult(text, blocked)

    def host_allowed(self, url: str) -> bool:
        if self.allowed is None:
            return True
        try:
            host = (urlsplit(url).hostname or "").lower().strip(".")
        except ValueError:
            return False
        return any(host == domain or host.endswith("." + domain) for domain in self.allowed)
