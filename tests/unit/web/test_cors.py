# SPDX-License-Identifier: Apache-2.0
"""CORS on its own: exact origin matching, credentials never with '*', refused preflights."""

from __future__ import annotations

import pytest

from bastion.web import CORS
from tests.unit.web.apps import client_for, responder

ALLOWED = "https://app.example.org"
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "access-control-expose-headers",
)
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


def cors(origins: list[str] | None = None) -> CORS:
    return CORS(
        responder(),
        allowed_origins=origins or [ALLOWED, "http://localhost:8000"],
        allow_headers=("Content-Type", "Authorization", "X-Service-Key", "X-CSRF-Token"),
    )


async def test_allowed_origin_gets_itself_back_with_credentials() -> None:
    async with client_for(cors()) as http:
        response = await http.get("/", headers={"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    assert "Content-Warning" in response.headers["access-control-expose-headers"]
    assert response.headers["vary"] == "Origin"


REFUSED = [
    "https://app.example.org.evil.com",
    "https://evil-app.example.org",
    "https://evilapp.example.org",
    "https://app.example.org:8443",
    "http://app.example.org",
    "https://example.org",
    "https://APP.EXAMPLE.ORG",
    "https://app.example.org/",
    "https://app.example.org/path",
    " https://app.example.org",
    "null",
    "",
    "*",
    "file://",
    "https://app.example.org\r\nX-Injected: 1",
    "x" * 10_000,
]


@pytest.mark.parametrize("origin", REFUSED)
async def test_refused_origins_get_no_cors_headers(origin: str) -> None:
    async with client_for(cors()) as http:
        response = await http.get("/", headers={"Origin": origin.encode("latin-1").decode("latin-1")})
        preflight = await http.options("/", headers={"Origin": origin, **PREFLIGHT})
    assert response.status_code == 200  # the request itself is served; the browser won't share it
    for name in CORS_HEADERS:
        assert name not in response.headers
        assert name not in preflight.headers
    assert response.headers["vary"] == "Origin"
    assert preflight.status_code == 403
    assert preflight.json()["detail"]["error"] == "cors_rejected"


async def test_two_origin_headers_are_refused() -> None:
    async with client_for(cors()) as http:
        response = await http.get("/", headers=[("Origin", ALLOWED), ("Origin", ALLOWED)])
    assert "access-control-allow-origin" not in response.headers


async def test_allowed_preflight() -> None:
    async with client_for(cors()) as http:
        response = await http.options(
            "/api/x",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "Content-Type, authorization, X-Service-Key, x-csrf-token",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-methods"] == "GET, POST, PUT, DELETE, OPTIONS"
    assert response.headers["access-control-allow-headers"] == (
        "Content-Type, Authorization, X-Service-Key, X-CSRF-Token"
    )
    assert response.headers["access-control-max-age"] == "3600"
    assert response.headers["vary"] == "Origin"


@pytest.mark.parametrize(
    "request_headers",
    [
        {"Access-Control-Request-Method": "PATCH"},
        {"Access-Control-Request-Method": "TRACE"},
        {"Access-Control-Request-Method": "post"},
        {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-Admin-Override"},
        {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, x-evil"},
    ],
)
async def test_preflight_for_other_methods_or_headers_is_refused(request_headers: dict[str, str]) -> None:
    async with client_for(cors()) as http:
        response = await http.options("/", headers={"Origin": ALLOWED, **request_headers})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert set(response.json()["detail"]) >= {"error", "message", "request_id"}


async def test_wildcard_never_comes_with_credentials() -> None:
    async with client_for(cors(["*", ALLOWED])) as http:
        other = await http.get("/", headers={"Origin": "https://anyone.example"})
        listed = await http.get("/", headers={"Origin": ALLOWED})
        preflight = await http.options("/", headers={"Origin": "https://anyone.example", **PREFLIGHT})
    assert other.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in other.headers
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    assert listed.headers["access-control-allow-origin"] == ALLOWED
    assert listed.headers["access-control-allow-credentials"] == "true"


async def test_no_origin_means_no_cors_headers_but_vary() -> None:
    async with client_for(cors()) as http:
        response = await http.get("/")
        options = await http.options("/", headers={"Origin": ALLOWED})  # not a preflight
    assert "access-control-allow-origin" not in response.headers
    assert response.headers["vary"] == "Origin"
    assert options.status_code == 200  # passed to the app as an ordinary request
    assert options.headers["access-control-allow-origin"] == ALLOWED


async def test_app_cors_headers_cannot_widen_the_policy() -> None:
    app = CORS(
        responder(
            headers=[(b"access-control-allow-origin", b"*"), (b"access-control-allow-credentials", b"true")]
        ),
        allowed_origins=[ALLOWED],
    )
    async with client_for(app) as http:
        response = await http.get("/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
