# SPDX-License-Identifier: Apache-2.0
"""A scorer for HTTP responses following the MDN HTTP Observatory rules ("Tests & Scoring").

Baseline 100; penalties first; bonuses only when the penalised score is still >= 90; floor 0.
Grades: 100+ A+, 90 A, 85 A-, 80 B+, 70 B, 65 B-, 60 C+, 50 C, 45 C-, 40 D+, 30 D, 25 D-, else F.
The documented maximum is 135: CSP default-src 'none' +10, cookies secure+HttpOnly+SameSite +5,
Referrer-Policy private +5, HSTS preloaded +5 (membership of the browsers' preload list, which no
header can earn), SRI on every script +5, X-Frame-Options via CSP frame-ancestors +5.
The modifiers are the documented ones; where the documentation table disagrees with common sense
(it lists corp-not-implemented as +5) the penalty-free value 0 is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx

GRADES = ((100, "A+"), (90, "A"), (85, "A-"), (80, "B+"), (70, "B"), (65, "B-"), (60, "C+"), (50, "C"))
GRADES += ((45, "C-"), (40, "D+"), (30, "D"), (25, "D-"), (0, "F"))
PRIVATE_REFERRER = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
UNSAFE_REFERRER = {"origin", "origin-when-cross-origin", "unsafe-url"}
VALID_REFERRER = PRIVATE_REFERRER | UNSAFE_REFERRER | {"no-referrer-when-downgrade"}
SIX_MONTHS = 15_768_000
FOREIGN_ORIGIN = "https://http-observatory.security.mozilla.org"


@dataclass
class Score:
    results: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, test: str, result: str, modifier: int) -> None:
        self.results[test] = (result, modifier)

    @property
    def total(self) -> int:
        penalties = sum(m for _, m in self.results.values() if m < 0)
        bonuses = sum(m for _, m in self.results.values() if m > 0)
        score = 100 + penalties
        if score >= 90:
            score += bonuses
        return max(0, score)

    @property
    def grade(self) -> str:
        return next(grade for floor, grade in GRADES if self.total >= floor)


def parse_csp(value: str) -> dict[str, list[str]] | None:
    policy: dict[str, list[str]] = {}
    for part in value.split(";"):
        tokens = part.strip().split()
        if not tokens:
            continue
        name = tokens[0].lower()
        if not name.replace("-", "").isalpha() or name in policy:
            return None
        policy[name] = [token.lower() for token in tokens[1:]]
    return policy or None


def _csp(headers: Mapping[str, str], score: Score) -> dict[str, list[str]] | None:
    raw = headers.get("content-security-policy")
    if raw is None:
        score.add("content-security-policy", "csp-not-implemented", -25)
        return None
    policy = parse_csp(raw)
    if policy is None:
        score.add("content-security-policy", "csp-header-invalid", -25)
        return None
    default = policy.get("default-src")
    script = policy.get("script-src", default)
    style = policy.get("style-src", default)
    obj = policy.get("object-src", default)
    strict_dynamic = script is not None and "'strict-dynamic'" in script
    broad = {"*", "http:", "https:", "data:"}
    unrestricted = script is None or obj is None
    unsafe_script = (
        script is not None and not strict_dynamic and bool("'unsafe-inline'" in script or broad & set(script))
    )
    if unrestricted or unsafe_script or (obj is not None and broad & set(obj)):
        score.add("content-security-policy", "csp-implemented-with-unsafe-inline", -20)
    elif any(src.startswith("http:") for sources in policy.values() for src in sources):
        score.add("content-security-policy", "csp-implemented-with-insecure-scheme", -20)
    elif "'unsafe-eval'" in script:
        score.add("content-security-policy", "csp-implemented-with-unsafe-eval", -10)
    elif style is not None and ("'unsafe-inline'" in style or broad & set(style)):
        score.add("content-security-policy", "csp-implemented-with-unsafe-inline-in-style-src-only", 0)
    elif default == ["'none'"]:
        score.add("content-security-policy", "csp-implemented-with-no-unsafe-default-src-none", 10)
    else:
        score.add("content-security-policy", "csp-implemented-with-no-unsafe", 5)
    return policy


def _cookies(response: httpx.Response, hsts: bool, score: Score) -> None:
    cookies = response.headers.get_list("set-cookie")
    if not cookies:
        score.add("cookies", "cookies-not-found", 0)
        return
    worst = ("cookies-secure-with-httponly-sessions-and-samesite", 5)
    for cookie in cookies:
        attrs = {part.strip().split("=", 1)[0].lower(): part for part in cookie.split(";")[1:]}
        samesite = attrs.get("samesite", "").split("=", 1)[-1].strip().lower()
        if "secure" not in attrs:
            worst = min(
                worst, ("cookies-without-secure-flag", -20) if not hsts else ("x", -5), key=lambda r: r[1]
            )
        elif "httponly" not in attrs:
            worst = min(worst, ("cookies-session-without-httponly-flag", -30), key=lambda r: r[1])
        elif "samesite" in attrs and samesite not in ("strict", "lax"):
            worst = min(worst, ("cookies-samesite-flag-invalid", -20), key=lambda r: r[1])
        elif "samesite" not in attrs:
            worst = min(worst, ("cookies-secure-with-httponly-sessions", 0), key=lambda r: r[1])
    score.add("cookies", *worst)


def _cors(response: httpx.Response, score: Score) -> None:
    acao = response.headers.get("access-control-allow-origin")
    credentials = response.headers.get("access-control-allow-credentials", "").lower() == "true"
    if acao is None:
        score.add("cors", "cross-origin-resource-sharing-not-implemented", 0)
    elif acao == FOREIGN_ORIGIN and credentials:
        score.add("cors", "cross-origin-resource-sharing-implemented-with-universal-access", -50)
    elif acao == "*":
        score.add("cors", "cross-origin-resource-sharing-implemented-with-public-access", 0)
    else:
        score.add("cors", "cross-origin-resource-sharing-implemented-with-restricted-access", 0)


def _redirection(response: httpx.Response, http_response: httpx.Response | None, score: Score) -> None:
    if http_response is None:
        score.add("redirection", "redirection-not-needed-no-http", 0)
        return
    if not http_response.is_redirect:
        score.add("redirection", "redirection-missing", -20)
        return
    target = urlsplit(http_response.headers["location"])
    if target.scheme != "https":
        score.add("redirection", "redirection-not-to-https-on-initial-redirection", -10)
    elif target.hostname != http_response.request.url.host:
        score.add("redirection", "redirection-off-host-from-http", -5)
    elif response.url.scheme != "https":
        score.add("redirection", "redirection-not-to-https", -20)
    else:
        score.add("redirection", "redirection-to-https", 0)


def _referrer(headers: Mapping[str, str], score: Score) -> None:
    raw = headers.get("referrer-policy")
    if raw is None:
        score.add("referrer-policy", "referrer-policy-not-implemented", 0)
        return
    tokens = [token.strip().lower() for token in raw.split(",") if token.strip()]
    valid = [token for token in tokens if token in VALID_REFERRER]
    if not valid:
        score.add("referrer-policy", "referrer-policy-header-invalid", -5)
    elif valid[-1] in PRIVATE_REFERRER:
        score.add("referrer-policy", "referrer-policy-private", 5)
    elif valid[-1] in UNSAFE_REFERRER:
        score.add("referrer-policy", "referrer-policy-unsafe", -5)
    else:
        score.add("referrer-policy", "referrer-policy-no-referrer-when-downgrade", 0)


def _hsts(response: httpx.Response, preloaded: bool, score: Score) -> bool:
    if response.url.scheme != "https":
        score.add("strict-transport-security", "hsts-not-implemented-no-https", -20)
        return False
    raw = response.headers.get("strict-transport-security")
    if raw is None:
        score.add("strict-transport-security", "hsts-not-implemented", -20)
        return False
    max_age = None
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age":
            max_age = int(value.strip('"')) if value.strip('"').isdigit() else None
    if max_age is None:
        score.add("strict-transport-security", "hsts-header-invalid", -20)
        return False
    if preloaded:
        score.add("strict-transport-security", "hsts-preloaded", 5)
    elif max_age >= SIX_MONTHS:
        score.add("strict-transport-security", "hsts-implemented-max-age-at-least-six-months", 0)
    else:
        score.add("strict-transport-security", "hsts-implemented-max-age-less-than-six-months", -10)
    return max_age > 0


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))


def _sri(response: httpx.Response, score: Score) -> None:
    if not response.headers.get("content-type", "").lower().startswith("text/html"):
        score.add("subresource-integrity", "sri-not-implemented-response-not-html", 0)
        return
    parser = _Scripts()
    parser.feed(response.text)
    sourced = [script for script in parser.scripts if script.get("src")]
    if not sourced:
        score.add("subresource-integrity", "sri-not-implemented-but-no-scripts-loaded", 0)
        return
    host = response.url.host
    external = [s for s in sourced if urlsplit(str(s["src"])).hostname not in (None, host)]
    insecure = [s for s in external if urlsplit(str(s["src"])).scheme == "http"]
    with_sri = all(s.get("integrity") for s in external) and bool(external)
    if insecure:
        score.add(
            "subresource-integrity", "sri-not-implemented-and-external-scripts-not-loaded-securely", -50
        )
    elif with_sri or (sourced and all(s.get("integrity") for s in sourced)):
        score.add("subresource-integrity", "sri-implemented-and-all-scripts-loaded-securely", 5)
    elif external:
        score.add("subresource-integrity", "sri-not-implemented-but-external-scripts-loaded-securely", -5)
    else:
        score.add("subresource-integrity", "sri-not-implemented-but-all-scripts-loaded-from-secure-origin", 0)


def _nosniff(headers: Mapping[str, str], score: Score) -> None:
    raw = headers.get("x-content-type-options")
    if raw is None:
        score.add("x-content-type-options", "x-content-type-options-not-implemented", -5)
    elif raw.strip().lower() == "nosniff":
        score.add("x-content-type-options", "x-content-type-options-nosniff", 0)
    else:
        score.add("x-content-type-options", "x-content-type-options-header-invalid", -5)


def _frames(headers: Mapping[str, str], csp: dict[str, list[str]] | None, score: Score) -> None:
    if csp is not None and "frame-ancestors" in csp:
        score.add("x-frame-options", "x-frame-options-implemented-via-csp", 5)
        return
    raw = headers.get("x-frame-options")
    if raw is None:
        score.add("x-frame-options", "x-frame-options-not-implemented", -20)
    elif raw.strip().lower() in ("deny", "sameorigin"):
        score.add("x-frame-options", "x-frame-options-sameorigin-or-deny", 0)
    elif raw.strip().lower().startswith("allow-from "):
        score.add("x-frame-options", "x-frame-options-allow-from-origin", 0)
    else:
        score.add("x-frame-options", "x-frame-options-header-invalid", -20)


def _corp(headers: Mapping[str, str], score: Score) -> None:
    raw = headers.get("cross-origin-resource-policy")
    value = raw.strip().lower() if raw is not None else None
    if value is None:
        score.add("cross-origin-resource-policy", "corp-not-implemented", 0)
    elif value == "same-origin":
        score.add("cross-origin-resource-policy", "corp-implemented-with-same-origin", 0)
    elif value == "same-site":
        score.add("cross-origin-resource-policy", "corp-implemented-with-same-site", 0)
    elif value == "cross-origin":
        score.add("cross-origin-resource-policy", "corp-implemented-with-cross-origin", -20)
    else:
        score.add("cross-origin-resource-policy", "corp-header-invalid", -20)


def score(
    response: httpx.Response, *, http_response: httpx.Response | None = None, hsts_preloaded: bool = False
) -> Score:
    """Score ``response`` (fetched over https with ``Origin: FOREIGN_ORIGIN``, as the Observatory
    does); ``http_response`` is the answer to the same URL over plain http, if it is served at all."""
    result = Score()
    headers = response.headers
    csp = _csp(headers, result)
    hsts = _hsts(response, hsts_preloaded, result)
    _cookies(response, hsts, result)
    _cors(response, result)
    _redirection(response, http_response, result)
    _referrer(headers, result)
    _sri(response, result)
    _nosniff(headers, result)
    _frames(headers, csp, result)
    _corp(headers, result)
    return result
