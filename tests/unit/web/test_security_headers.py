# SPDX-License-Identifier: Apache-2.0
"""SecurityHeaders on its own: every response, errors included, gets the policy headers."""

from __future__ import annotations

import re

import pytest

from bastion.web import SecurityHeaders
from bastion.web.security_headers import API_CSP
from tests.unit.web.apps import client_for, responder

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "x-xss-protection": "0",
    "permissions-policy": "geolocation=(), microphone=(), camera=()",
    "content-security-policy": API_CSP,
    "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
}


@pytest.mark.parametrize("status", [200, 201, 204, 301, 400, 401, 404, 413, 429, 500, 503])
async def test_every_status_gets_every_header(status: int) -> None:
    app = SecurityHeaders(responder(status=status, body=b""))
    async with client_for(app) as http:
        response = await http.get("/anything")
    assert response.status_code == status
    for name, value in EXPECTED.items():
        assert response.headers[name] == value, name
    if status >= 400:
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


async def test_app_supplied_weaker_values_are_replaced_and_server_is_stripped() -> None:
    weak = [
        (b"server", b"uvicorn/0.1 (Debian)"),
        (b"x-powered-by", b"FastAPI"),
        (b"x-frame-options", b"ALLOWALL"),
        (b"content-security-policy", b"default-src *"),
        (b"access-control-allow-origin", b"*"),
    ]
    app = SecurityHeaders(responder(headers=weak))
    async with client_for(app) as http:
        response = await http.get("/")
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    assert response.headers.get_list("content-security-policy") == [API_CSP]
    # Not this layer's business: CORS decides that header.
    assert response.headers["access-control-allow-origin"] == "*"


async def test_hsts_only_over_https() -> None:
    app = SecurityHeaders(responder())
    async with client_for(app, base_url="http://testserver") as http:
        plain = await http.get("/")
    async with client_for(app, base_url="https://testserver") as http:
        secure = await http.get("/")
    assert "strict-transport-security" not in plain.headers
    assert secure.headers["strict-transport-security"].startswith("max-age=31536000")


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer x"}, {"Cookie": "session=abc"}, {"X-API-Key": "bst_x"}, {"x-api-key": "k"}],
)
async def test_credentialed_requests_are_never_cached(headers: dict[str, str]) -> None:
    app = SecurityHeaders(responder(headers=[(b"cache-control", b"public, max-age=600")]))
    async with client_for(app) as http:
        response = await http.get("/", headers=headers)
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_custom_api_key_header_counts_as_a_credential() -> None:
    app = SecurityHeaders(responder(), api_key_header="X-Service-Key")
    async with client_for(app) as http:
        response = await http.get("/", headers={"X-Service-Key": "k"})
    assert response.headers["cache-control"] == "no-store"


async def test_public_success_keeps_the_route_cache_policy() -> None:
    app = SecurityHeaders(responder(headers=[(b"cache-control", b"public, max-age=600")]))
    async with client_for(app) as http:
        response = await http.get("/")
    assert response.headers["cache-control"] == "public, max-age=600"
    assert "pragma" not in response.headers


async def test_errors_override_a_route_cache_policy() -> None:
    app = SecurityHeaders(responder(status=404, headers=[(b"cache-control", b"public, max-age=600")]))
    async with client_for(app) as http:
        response = await http.get("/")
    assert response.headers.get_list("cache-control") == ["no-store"]


async def test_html_gets_a_nonce_policy_matching_the_nonce_the_page_saw() -> None:
    app = SecurityHeaders(responder(content_type=b"text/html; charset=utf-8"))
    async with client_for(app) as http:
        first = await http.get("/page")
        second = await http.get("/page")
    csp = first.headers["content-security-policy"]
    nonce = first.json()["csp_nonce"]
    assert f"script-src 'nonce-{nonce}' 'strict-dynamic'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", nonce)
    assert second.json()["csp_nonce"] != nonce


async def test_microphone_only_on_configured_prefixes() -> None:
    app = SecurityHeaders(responder(), microphone_paths=["/voice/"])
    async with client_for(app) as http:
        allowed = [await http.get(path) for path in ("/voice", "/voice/record")]
        refused = [await http.get(path) for path in ("/voiceover", "/", "/api/voice")]
    for response in allowed:
        assert "microphone=(self)" in response.headers["permissions-policy"]
    for response in refused:
        assert "microphone=()" in response.headers["permissions-policy"]


async def test_xss_protection_is_configurable_and_validated() -> None:
    app = SecurityHeaders(responder(), x_xss_protection="1; mode=block")
    async with client_for(app) as http:
        response = await http.get("/")
    assert response.headers["x-xss-protection"] == "1; mode=block"
    with pytest.raises(ValueError):
        SecurityHeaders(responder(), x_xss_protection="1; report=https://evil")
