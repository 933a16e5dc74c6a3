# SPDX-License-Identifier: Apache-2.0
"""Scrubbing of credentials from anything headed for a log or an error report: keys, headers, query
strings, exception text.

Only text a client or a library chose needs a scan (query strings, paths, exception messages,
header values); fields Bastion writes itself are marked ``Own`` and pass unscanned. The scan is
linear in the length of the text whatever it holds: configured secret values are found with plain
substring search, every other rule is one alternative of a single RE2 pattern (RE2 has no
backtracking), compiled once per app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import re2

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
# Memoised name verdicts are capped: header names at DEBUG are client-chosen and unbounded.
_VERDICTS_MAX = 4096

# Credentials recognisable by their shape, wherever they stand. Each is an alternative of the one
# pattern; the group says which rule matched.
_SHAPES = (
    r"(?P<pem>-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|$))",
    r"(?P<scheme>(?i:\b(?:bearer|basic|digest|token))\s+)[A-Za-z0-9._~+/=\-]{4,}",
    r"(?P<jwt>\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.?[A-Za-z0-9_\-]*)",
    r"(?P<bst>\bbst_)[A-Za-z0-9_\-]+",
    r"(?P<sk>\bsk-)[A-Za-z0-9_\-]{8,}",
    r"(?P<userinfo>(?i:\b[a-z][a-z0-9+.\-]*://[^/\s:@]*):)[^@\s/]+@",
)


class Own(str):
    """Text Bastion wrote itself (a route template, a canonical address, a validated id).

    The redactor passes it unscanned. Never wrap anything a client or a library chose.
    """

    __slots__ = ()


_PLAIN = (int, float, bool, type(None), Own)
_STRUCTLOG_META = frozenset({"_record", "_from_structlog"})


def _detect_only() -> Any:
    options = re2.Options()
    options.never_capture = True
    return options


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


class Redactor:
    """Removes secrets from log events.

    Built once per app from the settings: the configured API key header and every configured secret
    value are added to the built-in rules, so a secret is scrubbed even where no rule names it.
    """

    def __init__(self, *, extra_names: Iterable[str] = (), secret_values: Iterable[str] = ()) -> None:
        self._names = frozenset(_norm(n) for n in (*_SENSITIVE_NAMES, *extra_names))
        # Longest first, so a secret that contains another is replaced whole.
        self._values = tuple(sorted({v for v in secret_values if len(v) >= 8}, key=len, reverse=True))
        self._verdicts: dict[str, bool] = {}
        words = "|".join(
            sorted({re2.escape(n) for n in self._names} | {re2.escape(p) for p in _SENSITIVE_PARTS}, key=len)[
                ::-1
            ]
        )
        shapes = "|".join(_SHAPES)
        # "name": "value" in JSON or Python reprs, then name=value in query strings, form bodies,
        # cookies and "Header: value" lines; a value may keep its auth scheme ("Bearer x").
        quoted = (
            rf"(?P<quoted>(?i:[\"']{_NAME}(?:{words}){_NAME}[\"']\s*[:=]\s*))"
            r"(?:\"(?P<dq>[^\"\n]*)\"|'(?P<sq>[^'\n]*)')"
        )
        pair = (
            rf"(?P<pair>(?i:\b{_NAME}(?:{words}){_NAME}))(?P<sep>\s*[=:]\s*)"
            r"(?P<value>(?i:(?:bearer|basic|digest|token)\s+)?[^&;\s,'\"}]+)"
        )
        self._shapes = re2.compile(shapes)
        self._scan = re2.compile(f"{shapes}|{quoted}|{pair}")
        # The same patterns without captures, for the question "anything here at all?": RE2 answers
        # it with its DFA, several times faster than a search that reports every group.
        self._shapes_seen = re2.compile(shapes, _detect_only())
        self._seen = re2.compile(f"{shapes}|{quoted}|{pair}", _detect_only())
        # The shapes lead both patterns, so their groups have the same numbers in each. Groups are
        # read by number: the binding rebuilds its name table on every lookup by name.
        self._group: dict[str, int] = dict(self._scan.groupindex)

    def is_sensitive(self, name: str) -> bool:
        verdict = self._verdicts.get(name)
        if verdict is None:
            normalized = _norm(name)
            verdict = (
                normalized in self._names
                or normalized.endswith("-token")
                or any(part in normalized for part in _SENSITIVE_PARTS)
            )
            if len(self._verdicts) < _VERDICTS_MAX:
                self._verdicts[name] = verdict
        return verdict

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if self._seen.search(value) is None:  # the common case: nothing that looks like a secret
            return value
        return str(self._scan.sub(self._replace, value))

    def _replace(self, match: Any) -> str:
        group = self._group
        if match[group["pem"]] is not None or match[group["jwt"]] is not None:
            return REDACTED
        prefix = match[group["scheme"]]
        if prefix is not None:
            return f"{prefix.rstrip()} {REDACTED}"
        prefix = match[group["bst"]] or match[group["sk"]]
        if prefix is not None:
            return f"{prefix}{REDACTED}"
        prefix = match[group["userinfo"]]
        if prefix is not None:
            return f"{prefix}{REDACTED}@"
        if match[group["quoted"]] is not None:
            return self._quoted_value(match)
        return self._pair_value(match)

    def _shapes_only(self, value: str) -> str:
        """``value`` with credentials of known shape replaced: the value of a harmless name."""
        if self._shapes_seen.search(value) is None:
            return value
        return str(self._shapes.sub(self._replace, value))

    def _pair_value(self, match: Any) -> str:
        group = self._group
        name, sep, value = match[group["pair"]], match[group["sep"]], match[group["value"]]
        if self.is_sensitive(name):
            return f"{name}{sep}{REDACTED}"
        return f"{name}{sep}{self._shapes_only(value)}"

    def _quoted_value(self, match: Any) -> str:
        head: str = match[self._group["quoted"]]
        double: str | None = match[self._group["dq"]]
        quote, value = ('"', double) if double is not None else ("'", match[self._group["sq"]])
        name = head.strip()[1:].split('"', 1)[0].split("'", 1)[0]
        if self.is_sensitive(name):
            return f"{head}{quote}{REDACTED}{quote}"
        return f"{head}{quote}{self._shapes_only(value)}{quote}"

    def value(self, value: Any, *, depth: int = 0, keep: tuple[type, ...] = ()) -> Any:
        """``value`` with every string in it scrubbed, and every entry under a sensitive name replaced.

        ``Own`` text is returned as it is. Other objects become their scrubbed text, except
        instances of ``keep`` (an error report's timestamps), which are returned as they are.
        Nesting deeper than 8 levels is replaced whole.
        """
        if isinstance(value, _PLAIN):
            return value
        if depth > 8:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, dict | Mapping):
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
        if keep and isinstance(value, keep):
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
        """structlog processor.

        structlog's own bookkeeping (the standard library record a foreign line came from) is
        passed through for the processors after this one; it is removed before rendering.
        """
        return {
            key: (
                value
                if key in _STRUCTLOG_META
                else REDACTED
                if self.is_sensitive(key)
                else self.value(value, depth=1)
            )
            for key, value in event_dict.items()
        }
