# SPDX-License-Identifier: Apache-2.0
"""LICENSE_URL in the LICENSE_HEADER header of every answer: the app's, the middleware's, streams,
redirects and the PROMETHEUS_PORT listener; nowhere when it is unset; unsafe values refused."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bastion.settings import ConfigurationError, Settings
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import identity_app, identity_settings, user_session
from tests.support.servers import free_port

TERMS = "https://example.org/license"


async def every_kind_of_answer(settings: Settings) -> dict[str, httpx.Response]:
    """One answer of each kind the stack gives, from an app on ``settings``."""
    answers: dict[str, httpx.Response] = {}
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "reader@example.com")
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        answers["health"] = await http.get("/health")
        answers["jwks"] = await http.get("/.well-known/jwks.json")
        answers["not found"] = await http.get("/no/such/route")
        answers["method not allowed"] = await http.put("/health")
        answers["metrics (refused)"] = await http.get("/metrics", headers=auth)
        answers["unauthenticated"] = await http.get("/api/auth/me")
        answers["bad host"] = await http.get("/health", headers={"Host": "evil.example"})
        answers["too large"] = await http.post(
            "/api/auth/login", content=b"{" + b" " * 4096 + b"}", headers={"Content-Type": "application/json"}
        )
        session = (await http.post("/api/sessions", json={}, headers=auth)).json()
        messages = f"/api/sessions/{session['id']}/messages"
        answers["reply"] = await http.post(messages, json={"content": "hello"}, headers=auth)
        answers["stream"] = await http.post(messages, json={"content": "hi", "stream": True}, headers=auth)
        answers["v1 stream"] = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers=auth,
        )
        for _ in range(25):  # past RATE_LIMIT_PER_MINUTE: the global limiter answers
            answers["rate limited"] = await http.get("/.well-known/jwks.json")
            if answers["rate limited"].status_code == 429:
                break
    return answers


def licensed(make_settings: SettingsFactory, **overrides: Any) -> Settings:
    return identity_settings(
        make_settings,
        LICENSE_URL=TERMS,
        MAX_REQUEST_BODY_BYTES=1024,
        RATE_LIMIT_PER_MINUTE=20,
        **overrides,
    )


async def test_every_answer_carries_the_license_link(make_settings: SettingsFactory) -> None:
    answers = await every_kind_of_answer(licensed(make_settings, LICENSE_HEADER="X-Terms-Of-Use"))
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "health": 200,
        "jwks": 200,
        "not found": 404,
        "method not allowed": 405,
        "metrics (refused)": 403,
        "unauthenticated": 401,
        "bad host": 400,
        "too large": 413,
        "reply": 200,
        "stream": 200,
        "v1 stream": 200,
        "rate limited": 429,
    }
    for name, response in answers.items():
        assert response.headers.get("x-terms-of-use") == TERMS, name
        assert "x-license" not in response.headers, name
        if response.status_code >= 400:
            assert response.json()["detail"]["license"] == TERMS, name


async def test_no_license_header_when_unset(make_settings: SettingsFactory) -> None:
    answers = await every_kind_of_answer(
        identity_settings(make_settings, MAX_REQUEST_BODY_BYTES=1024, RATE_LIMIT_PER_MINUTE=20)
    )
    for name, response in answers.items():
        assert "x-license" not in response.headers, name
        if response.status_code >= 400:
            assert "license" not in response.json()["detail"], name


async def test_redirects_and_the_metrics_listener_carry_it(make_settings: SettingsFactory) -> None:
    port = free_port()
    settings = licensed(make_settings, FORCE_HTTPS=True, PROMETHEUS_PORT=port)
    async with identity_app(settings, base_url="http://localhost") as (_app, http):
        redirect = await http.get("/api/auth/me")  # not /health: a loopback probe of it is answered
        assert redirect.status_code in (301, 307, 308) and redirect.headers["location"].startswith("https://")
        assert redirect.headers["x-license"] == TERMS
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        await writer.drain()
        head = (await reader.read()).split(b"\r\n\r\n", 1)[0]
        writer.close()
        assert b"200 OK" in head.split(b"\r\n", 1)[0]
        assert f"x-license: {TERMS}".encode() in head.lower()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LICENSE_HEADER", "Content-Type"),
        ("LICENSE_HEADER", "set-cookie"),
        ("LICENSE_HEADER", "Strict-Transport-Security"),
        ("LICENSE_HEADER", "X-Request-ID"),
        ("LICENSE_HEADER", "X-Content-Signature"),
        ("LICENSE_HEADER", "Access-Control-Allow-Origin"),
        ("LICENSE_HEADER", "X-RateLimit-Limit"),
        ("LICENSE_HEADER", "X License"),
        ("LICENSE_HEADER", "X-License\r\nSet-Cookie: a=b"),
        ("LICENSE_HEADER", ""),
        ("LICENSE_URL", "https://example.org/terms\r\nSet-Cookie: a=b"),
        ("LICENSE_URL", "https://example.org/terms of use"),
        ("LICENSE_URL", "ftp://example.org/terms"),
        ("LICENSE_URL", "javascript:alert(1)"),
        ("LICENSE_URL", "https:///terms"),
    ],
)
def test_unsafe_license_settings_are_refused(make_settings: SettingsFactory, name: str, value: str) -> None:
    extra = {} if name == "LICENSE_URL" else {"LICENSE_URL": TERMS}
    with pytest.raises((ConfigurationError, ValueError)) as caught:
        make_settings(**{name: value, **extra})
    assert name in str(caught.value) or name.lower() in str(caught.value)
