# SPDX-License-Identifier: Apache-2.0
"""The Observatory scorer used by the header tests must itself follow the published rules."""

from __future__ import annotations

import httpx

from tests.support import observatory

GOOD = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-resource-policy": "same-origin",
    "content-type": "application/json",
}


def response(
    headers: dict[str, str], *, url: str = "https://example.org/", body: str = "{}"
) -> httpx.Response:
    return httpx.Response(200, headers=headers, text=body, request=httpx.Request("GET", url))


def test_bare_response_scores_f() -> None:
    result = observatory.score(response({"content-type": "application/json"}), http_response=None)
    # CSP -25, HSTS -20, X-Content-Type-Options -5, X-Frame-Options -20.
    assert result.total == 30
    assert result.grade == "D"


def test_every_header_a_json_api_can_send_scores_120() -> None:
    result = observatory.score(response(GOOD))
    assert result.total == 120
    assert {name: modifier for name, (_, modifier) in result.results.items() if modifier} == {
        "content-security-policy": 10,
        "referrer-policy": 5,
        "x-frame-options": 5,
    }


def test_the_documented_maximum_is_135() -> None:
    # The three bonuses a JSON API cannot earn: cookies with Secure+HttpOnly+SameSite, script tags
    # with integrity hashes, and HSTS preload-list membership (a list, not a header).
    page = (
        '<html><script src="https://cdn.example.net/a.js" integrity="sha384-abc" crossorigin></script></html>'
    )
    headers = {
        **GOOD,
        "content-type": "text/html",
        "set-cookie": "__Host-s=1; Path=/; Secure; HttpOnly; SameSite=Strict",
    }
    result = observatory.score(response(headers, body=page), hsts_preloaded=True)
    assert result.total == 135


def test_bonuses_only_count_when_the_penalised_score_is_90_or_more() -> None:
    headers = {**GOOD}
    del headers["strict-transport-security"]  # -20 -> 80 before bonuses
    assert observatory.score(response(headers)).total == 80


def test_unsafe_policies_are_penalised() -> None:
    cases = {
        "default-src 'self'; script-src 'self' 'unsafe-inline'": -20,
        "default-src 'self'; script-src 'self' 'unsafe-eval'": -10,
        "default-src 'self'; style-src 'unsafe-inline'": 0,
        "default-src 'self'": 5,
        "frame-ancestors 'none'": -20,  # script-src and object-src unrestricted
        "default-src http://cdn.example": -20,
    }
    for policy, modifier in cases.items():
        result = observatory.score(response({**GOOD, "content-security-policy": policy}))
        assert result.results["content-security-policy"][1] == modifier, policy


def test_cors_reflecting_any_origin_with_credentials_costs_50() -> None:
    headers = {
        **GOOD,
        "access-control-allow-origin": observatory.FOREIGN_ORIGIN,
        "access-control-allow-credentials": "true",
    }
    assert observatory.score(response(headers)).results["cors"][1] == -50


def test_referrer_and_hsts_variants() -> None:
    unsafe = observatory.score(response({**GOOD, "referrer-policy": "unsafe-url"}))
    short = observatory.score(response({**GOOD, "strict-transport-security": "max-age=300"}))
    assert unsafe.results["referrer-policy"][1] == -5
    assert short.results["strict-transport-security"][1] == -10
