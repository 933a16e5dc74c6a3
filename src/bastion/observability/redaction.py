# SPDX-License-Identifier: Apache-2.0
"""Scrubbing of credentials from anything headed for a log or an error report: keys, headers, query
strings, exception text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

# Field names whose values are credentials wherever they appear (log keys, headers, query and
# form parameters, JSON in exception text). Matched case-insensitively, '-' and '_' alike.
_SENSITIVE_NAMES = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-csrf-token",
    "csrf",
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "session",
    "private-key",
    "client-secret",
    "code-verifier",
    "otp",
    "signature",
    "sig",
    "key",
    # Not a credential but personal data the database keeps sealed: an address searched for
    # (``GET /api/admin/users?email=``) stays out of the access log and error reports.
    "email",
)
_SENSITIVE_PARTS = ("password", "passwd", "secret", "api-key", "apikey", "private-key", "credential")
_NAME = r"[A-Za-z0-9_.\-]*"


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class Redactor:
    """Removes secrets from log events.

    Built once per app from the settings: the configured API key header and every configured secret
    value are added to the built-in rules, so a secret is scrubbed even where no rule names it.
    """

    def __init__(self, *, extra_names: Iterable[str] = (), secret_values: Iterable[str] = ()) -> None:
        self._names = frozenset(_norm(n) for n in (*_SENSITIVE_NAMES, *extra_names))
        values = sorted({v for v in secret_values if len(v) >= 8}, key=len, reverse=True)
        self._values = re.compile("|".join(re.escape(v) for v in values)) if values else None
        words = "|".join(
            sorted({re.escape(n) for n in self._names} | {re.escape(p) for p in _SENSITIVE_PARTS}, key=len)[
                ::-1
            ]
        )
        # name=value in query strings, form bodies, cookies and "Header: value" lines.
        self._pairs = re.compile(
            rf"(?i)(?P<name>\b{_NAME}(?:{words}){_NAME})(?P<sep>\s*[=:]\s*)(?P<value>[^&;\s,'\"}}]+)"
        )
        # "name": "value" in JSON or Python reprs.
        self._quoted = re.compile(
            rf"(?i)(?P<name>[\"']{_NAME}(?:{words}){_NAME}[\"']\s*[:=]\s*)(?P<q>[\"'])(?P<value>.*?)(?P=q)"
        )
        self._patterns: tuple[tuple[re.Pattern[str], str], ...] = (
            (re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=\-]{4,}"), rf"\1 {REDACTED}"),
            (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.?[A-Za-z0-9_\-]*"), REDACTED),
            (re.compile(r"\bbst_[A-Za-z0-9_\-]+"), f"bst_{REDACTED}"),
            (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), f"sk-{REDACTED}"),
            (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*):[^@\s/]+@"), rf"\1:{REDACTED}@"),
            (
                re.compile(
                    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
                ),
                REDACTED,
            ),
        )

    def is_sensitive(self, name: str) -> bool:
        normalized = _norm(name)
        return (
            normalized in self._names
            or normalized.endswith("-token")
            or any(part in normalized for part in _SENSITIVE_PARTS)
        )

    def text(self, value: str) -> str:
        if self._values is not None:
            value = self._values.sub(REDACTED, value)
        for pattern, replacement in self._patterns:
            value = pattern.sub(replacement, value)
        value = self._quoted.sub(self._quoted_value, value)
        return self._pairs.sub(self._pair_value, value)

    def _pair_value(self, match: re.Match[str]) -> str:
        if not self.is_sensitive(match["name"]) or match["value"] == REDACTED:
            return match.group(0)
        return f"{match['name']}{match['sep']}{REDACTED}"

    def _quoted_value(self, match: re.Match[str]) -> str:
        name = match["name"].split(match["name"][0])[1]
        if not self.is_sensitive(name):
            return match.group(0)
        return f"{match['name']}{match['q']}{REDACTED}{match['q']}"

    def value(self, value: Any, *, depth: int = 0, keep: tuple[type, ...] = ()) -> Any:
        """``value`` with every string in it scrubbed, and every entry under a sensitive name replaced.

        Other objects become their scrubbed text, except instances of ``keep`` (an error report's
        timestamps), which are returned as they are. Nesting deeper than 8 levels is replaced whole.
        """
        if depth > 8:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {
                k: (
                    REDACTED
                    if isinstance(k, str) and self.is_sensitive(k)
                    else self.value(v, depth=depth + 1, keep=keep)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v, depth=depth + 1, keep=keep) for v in value]
        if isinstance(value, (int, float, bool, *keep)) or value is None:
            return value
        return self.text(str(value))

    def headers(self, headers: Any, *, allowed: Iterable[str]) -> dict[str, str]:
        """Only the ``allowed`` headers (names matched case-insensitively), their values scrubbed.

        For reports that leave the process: every other header is dropped whole rather than
        judged by name, so a credential in a header nobody thought of is never sent.
        """
        keep = {_norm(name) for name in allowed}
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        kept: dict[str, str] = {}
        try:
            for name, value in pairs:
                if isinstance(name, str) and _norm(name) in keep and not self.is_sensitive(name):
                    kept[name] = self.text(str(value))
        except (TypeError, ValueError):  # not name/value pairs: nothing is kept
            return {}
        return kept

    def url(self, value: str) -> str:
        """``value`` without its query string and fragment, the rest scrubbed."""
        return self.text(value.split("?", 1)[0].split("#", 1)[0])

    def __call__(self, _logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        """structlog processor."""
        redacted = self.value(event_dict)
        if not isinstance(redacted, dict):  # pragma: no cover - a Mapping always maps to a dict
            return event_dict
        return redacted
