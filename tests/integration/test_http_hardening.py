# SPDX-License-Identifier: Apache-2.0
"""The whole middleware stack of create_app: headers on every response class, CORS, hosts, proxies,
limits, content types, docs, and an HTTP Observatory score on each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse

from bastion import __version__
from bastion.api.content_types import require_json
from bastion.app import create_app
from bastion.crypto import material
from bastion.errors import RateLimited, Unauthorized
from bastion.settings import Settings
from bastion.web.security_headers import API_CSP
from tests.conftest import SettingsFactory
from tests.support import observatory
from tests.support.lifespan import lifespan_of

FOREIGN = observatory.FOREIGN_ORIGIN
ALLOWED_ORIGIN = "https://app.example.org"
COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "x-xss-protection": "0",
    "permissions-policy": "geolocation=(), microphone=(), camera=()",
}
HSTS = "max-age=31536000; includeSubDomains; preload"


class Item(BaseModel):
    name: str = Field(max_length=20)
    count: int = Field(ge=0, le=10)


def add_test_routes(app: FastAPI) -> None:
    @app.get("/test/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/test/public")
    async def public() -> HTMLResponse:
        return HTMLResponse("<p>hi</p>", headers={"Cache-Control": "public, max-age=60"})

    @app.get("/test/unauthorized")
    async def unauthorized() -> None:
        raise Unauthorized()

    @app.get("/test/limited")
    async def limited() -> None:
        raise RateLimited(retry_after=7)

    @app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    @app.post("/test/json", dependencies=[Depends(require_json)])
    async def json_route(item: Item) -> Item:
        return item

    @app.post("/test/logout", dependencies=[Depends(require_json)], status_code=204)
    async def logout() -> None:
        return None

    @app.get("/test/page")
    async def page(request: Request) -> HTMLResponse:
        nonce = request.state.csp_nonce
        return HTMLResponse(f'<html><body><script nonce="{nonce}">document.title="x"</script></body></html>')

    @app.get("/test/client")
    async def client(request: Request) -> dict[str, Any]:
        return {
            "host": request.client.host if request.client else None,
            "scheme": request.url.scheme,
            "client_ip": request.state.client_ip,
        }


@asynccontextmanager
async def hardened(
    settings: Settings,
    *,
    base_url: str = "https://localhost",
    client: tuple[str, int] = ("198.51.100.7", 4000),
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    add_test_routes(app)
    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


def assert_security_headers(response: httpx.Response, *, https: bool = True) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.status_code, name)
    assert "server" not in response.headers
    if https:
        assert response.headers["strict-transport-security"] == HSTS
    else:
        assert "strict-transport-security" not in response.headers
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/html"):
        assert response.headers["content-security-policy"] == API_CSP
    if response.status_code >= 400:
        assert response.headers["cache-control"] == "no-store"
        assert content_type == "application/json; charset=utf-8"
        detail = response.json()["detail"]
        assert isinstance(detail["error"], str) and isinstance(detail["message"], str)
        assert detail["request_id"] == response.headers["x-request-id"]


def assert_a_plus(response: httpx.Response, http_response: httpx.Response | None = None) -> int:
    result = observatory.score(response, http_response=http_response)
    assert result.total >= 120, result.results
    assert result.grade == "A+"
    return result.total


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        ALLOWED_ORIGINS=f"{ALLOWED_ORIGIN},http://localhost:8000", MAX_REQUEST_BODY_BYTES=4096
    )


async def test_every_response_class_carries_every_header_and_scores_a_plus(settings: Settings) -> None:
    big = b'{"name": "' + b"x" * 8000 + b'"}'
    async with hardened(settings) as http:
        origin = {"Origin": FOREIGN}
        responses = {
            200: await http.get("/test/ok", headers=origin),
            401: await http.get("/test/unauthorized", headers=origin),
            404: await http.get("/nowhere", headers=origin),
            405: await http.post("/test/ok", headers=origin),
            413: await http.post(
                "/test/json", content=big, headers={**origin, "Content-Type": "application/json"}
            ),
            415: await http.post(
                "/test/json", content=b"name=x", headers={**origin, "Content-Type": "text/plain"}
            ),
            422: await http.post("/test/json", json={"name": "x", "count": 99}, headers=origin),
            429: await http.get("/test/limited", headers=origin),
            500: await http.get("/test/boom", headers=origin),
        }
    scores = set()
    for status, response in responses.items():
        assert response.status_code == status, (status, response.text)
        assert_security_headers(response)
        assert "access-control-allow-origin" not in response.headers
        scores.add(assert_a_plus(response))
    # Every header the rules reward is present; the rules cannot give more without cookies, script
    # tags with integrity hashes, or membership of the browsers' HSTS preload list.
    assert scores == {120}
    assert responses[401].headers["www-authenticate"] == "Bearer"
    assert responses[429].headers["retry-after"] == "7"
    assert responses[429].json()["detail"]["retry_after"] == 7
    assert "hunter2" not in responses[500].text
    assert responses[500].json()["detail"]["error"] == "internal_error"
    assert responses[413].json()["detail"]["error"] == "payload_too_large"
    assert responses[415].json()["detail"]["error"] == "unsupported_media_type"


async def test_success_json_declares_utf8(settings: Settings) -> None:
    async with hardened(settings) as http:
        response = await http.get("/test/ok")
        health = await http.get("/health")
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert health.headers["content-type"] == "application/json; charset=utf-8"


async def test_redirect_and_host_rejection_carry_the_headers(make_settings: SettingsFactory) -> None:
    settings = make_settings(FORCE_HTTPS=True)
    async with hardened(settings, base_url="http://localhost") as http:
        redirect = await http.get("/test/ok?x=1", headers={"Origin": FOREIGN})
        bad_host = await http.get("/test/ok", headers={"Host": "evil.example"})
    async with hardened(settings, base_url="https://localhost") as http:
        final = await http.get("/test/ok?x=1", headers={"Origin": FOREIGN})
        bad_host_https = await http.get("/test/ok", headers={"Host": "evil.example"})
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "https://localhost/test/ok?x=1"
    assert_security_headers(redirect, https=False)
    assert final.status_code == 200
    assert assert_a_plus(final, http_response=redirect) == 120
    for response in (bad_host, bad_host_https):
        assert response.status_code == 400
        assert response.json()["detail"]["error"] == "invalid_host"
        assert "location" not in response.headers
    assert_security_headers(bad_host, https=False)
    assert_security_headers(bad_host_https)


async def test_no_redirect_scores_the_missing_redirection(settings: Settings) -> None:
    async with hardened(settings, base_url="http://localhost") as http:
        plain = await http.get("/test/ok")
    result = observatory.score(plain, http_response=plain)
    assert result.results["redirection"] == ("redirection-missing", -20)
    assert result.results["strict-transport-security"][1] == -20


async def test_html_page_gets_the_nonce_policy_and_scores_a_plus(settings: Settings) -> None:
    async with hardened(settings) as http:
        page = await http.get("/test/page", headers={"Origin": FOREIGN})
    csp = page.headers["content-security-policy"]
    nonce = page.text.split('nonce="')[1].split('"')[0]
    assert f"'nonce-{nonce}'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert_security_headers(page)
    assert assert_a_plus(page) == 120


async def test_cache_control(settings: Settings) -> None:
    async with hardened(settings) as http:
        public = await http.get("/test/public")
        with_key = await http.get("/test/public", headers={"X-API-Key": "bst_whatever"})
        with_cookie = await http.get("/test/ok", headers={"Cookie": "session=s"})
    assert public.headers["cache-control"] == "public, max-age=60"
    assert with_key.headers["cache-control"] == "no-store"
    assert with_cookie.headers["cache-control"] == "no-store"


async def test_cors_through_the_whole_stack(settings: Settings) -> None:
    async with hardened(settings) as http:
        allowed = await http.get("/test/ok", headers={"Origin": ALLOWED_ORIGIN})
        allowed_error = await http.get("/test/boom", headers={"Origin": ALLOWED_ORIGIN})
        preflight = await http.options(
            "/test/json",
            headers={
                "Origin": ALLOWED_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-api-key, x-csrf-token, authorization",
            },
        )
        refused = await http.options(
            "/test/json",
            headers={"Origin": "https://app.example.org.evil.com", "Access-Control-Request-Method": "POST"},
        )
        null_origin = await http.get("/test/ok", headers={"Origin": "null"})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    # A permitted origin can read the error (CORS sits outside the error layer).
    assert allowed_error.status_code == 500
    assert allowed_error.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert preflight.status_code == 204
    assert "X-API-Key" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-max-age"] == "3600"
    assert_security_headers(preflight)
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert_security_headers(refused)
    assert "access-control-allow-origin" not in null_origin.headers
    assert assert_a_plus(allowed) == 120


async def test_spoofed_forwarding_from_untrusted_peer_is_ignored(make_settings: SettingsFactory) -> None:
    settings = make_settings(TRUSTED_PROXIES="10.0.0.0/8", FORCE_HTTPS=True)
    spoof = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}
    async with hardened(settings, base_url="http://localhost", client=("198.51.100.7", 1)) as http:
        untrusted = await http.get("/test/client", headers=spoof)
    async with hardened(settings, base_url="http://localhost", client=("10.0.0.2", 1)) as http:
        trusted = await http.get("/test/client", headers={**spoof, "X-Forwarded-For": "203.0.113.50"})
        trusted_ready = await http.get("/health/ready", headers=spoof)
    assert untrusted.status_code == 308  # still plain http: redirected
    assert "strict-transport-security" not in untrusted.headers
    assert trusted.status_code == 200
    assert trusted.json() == {"host": "203.0.113.50", "scheme": "https", "client_ip": "203.0.113.50"}
    assert trusted.headers["strict-transport-security"] == HSTS
    assert trusted_ready.status_code == 200  # the resolved client is loopback


async def test_require_json(settings: Settings) -> None:
    async with hardened(settings) as http:
        good = await http.post("/test/json", json={"name": "a", "count": 1})
        with_charset = await http.post(
            "/test/json",
            content=b'{"name":"a","count":1}',
            headers={"Content-Type": "application/json; charset=UTF-8"},
        )
        latin1 = await http.post(
            "/test/json",
            content=b'{"name":"a","count":1}',
            headers={"Content-Type": "application/json; charset=latin-1"},
        )
        form = await http.post("/test/json", data={"name": "a", "count": "1"})
        no_type = await http.post(
            "/test/json", content=b'{"name":"a","count":1}', headers={"Content-Type": ""}
        )
        bodiless = await http.post("/test/logout")
        malformed = await http.post(
            "/test/json", content=b"{nope", headers={"Content-Type": "application/json"}
        )
    assert good.status_code == 200 and with_charset.status_code == 200
    for response in (latin1, form, no_type):
        assert response.status_code == 415
        assert response.json()["detail"]["error"] == "unsupported_media_type"
    assert bodiless.status_code == 204
    assert malformed.status_code == 400
    assert malformed.json()["detail"]["error"] == "malformed_json"


HOSTILE: list[tuple[str, dict[str, str] | list[tuple[str, str]], int]] = [
    ("huge header", {"X-Big": "a" * 40_000}, 431),
    ("many headers", {f"X-H{i}": "1" for i in range(150)}, 431),
    ("bad host", {"Host": "evil.example"}, 400),
    ("host with path", {"Host": "localhost/evil"}, 400),
    ("host with userinfo", {"Host": "evil@localhost"}, 400),
    ("malformed origin", {"Origin": "https://app.example.org\\@evil"}, 200),
    ("huge origin", {"Origin": "https://" + "a" * 20_000}, 200),
    ("lying content length", {"Content-Length": "99999999999"}, 413),
    ("negative content length", {"Content-Length": "-5"}, 400),
    ("hex content length", {"Content-Length": "0x10"}, 400),
]


@pytest.mark.parametrize(("case", "headers", "status"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
async def test_hostile_inputs_get_clear_4xx(
    settings: Settings, case: str, headers: dict[str, str], status: int
) -> None:
    async with hardened(settings) as http:
        response = await http.post("/test/json", content=b"", headers=headers)
    if status == 200:
        # A malformed Origin is simply not granted anything; the request itself is judged on its own
        # (here: a bodiless POST to a route that needs a body).
        assert response.status_code == 422
        assert "access-control-allow-origin" not in response.headers
    else:
        assert response.status_code == status, case
    assert response.status_code < 500
    assert_security_headers(response)


def production_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {k.lower(): v for k, v in material.generate_all("EdDSA").items()}
    values.update(
        environment="production",
        var_dir=tmp_path / "var",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
        allowed_origins="https://app.example.org",
        allowed_hosts="localhost",
    )
    values.update({k.lower(): v for k, v in overrides.items()})
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_docs_off_in_production_unless_enabled(tmp_path: Path, make_settings: SettingsFactory) -> None:
    async with hardened(production_settings(tmp_path)) as http:
        for path in ("/docs", "/redoc", "/openapi.json"):
            response = await http.get(path)
            assert response.status_code == 404
            assert_security_headers(response)
    enabled = production_settings(tmp_path, ENABLE_DOCS=True)
    assert any("ENABLE_DOCS" in warning for warning in enabled.warnings())
    assert not any("ENABLE_DOCS" in warning for warning in production_settings(tmp_path).warnings())
    async with hardened(enabled) as http:
        assert (await http.get("/openapi.json")).status_code == 200
    async with hardened(make_settings()) as http:
        docs = await http.get("/docs")
        redoc = await http.get("/redoc")
    for page in (docs, redoc):
        assert page.status_code == 200
        nonce = page.headers["content-security-policy"].split("'nonce-")[1].split("'")[0]
        assert page.text.count("<script") == page.text.count(f'<script nonce="{nonce}"') > 0


async def test_the_license_link_is_on_every_response(make_settings: SettingsFactory) -> None:
    """LICENSE_URL goes in the LICENSE_HEADER header of every answer and in every error body."""
    terms = "https://example.org/terms"
    for header, settings in (
        ("x-license", make_settings(LICENSE_URL=terms)),
        ("x-terms-of-use", make_settings(LICENSE_URL=terms, LICENSE_HEADER="X-Terms-Of-Use")),
    ):
        async with hardened(settings, base_url="http://localhost") as http:
            ok = await http.get("/test/ok")
            missing = await http.get("/no/such/route")
            bad_host = await http.get("/test/ok", headers={"Host": "evil.example"})
        for response in (ok, missing, bad_host):
            assert response.headers[header] == terms, (header, response.status_code)
        assert missing.json()["detail"]["license"] == terms
    async with hardened(make_settings(), base_url="http://localhost") as http:
        assert "x-license" not in (await http.get("/test/ok")).headers


async def test_the_root_answers_scanners_with_every_header(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    """Host scanners start at ``/``: a small JSON document, every header, no version."""
    async with hardened(production_settings(tmp_path)) as http:
        production = await http.get("/", headers={"Accept": "text/html,*/*;q=0.8"})
    async with hardened(make_settings()) as http:
        development = await http.get("/")
    assert production.status_code == 200 == development.status_code
    assert production.json() == {"service": "Bastion", "links": {"health": "/health"}}
    assert development.json() == {
        "service": "Bastion",
        "links": {"health": "/health", "docs": "/docs", "openapi": "/openapi.json"},
    }
    for response in (production, development):
        assert_security_headers(response)
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert __version__ not in response.text and "version" not in response.text
        assert assert_a_plus(response) == 120
