# SPDX-License-Identifier: Apache-2.0
"""SENTRY_DSN: an unhandled error reaches a (local) Sentry, and nothing secret goes with it.

The capture server is a real HTTP server speaking Sentry's envelope endpoint; the SDK's own
transport posts to it. What arrived is searched byte for byte (decompressed) for every credential
the failing request carried and every configured secret the exception quoted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI

from bastion import __version__
from bastion.app import create_app
from bastion.db import migrate
from bastion.observability.errortracking import ALLOWED_HEADERS
from bastion.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.lifespan import lifespan_of
from tests.support.sentry_capture import CaptureServer, sentry_capture

OPENAI_KEY = "sk-live-openai-0123456789abcdef"
JWT_SECRET = "jwt-hs256-signing-secret-" + "k" * 24
STATIC_KEY = "static-app-key-" + "s" * 24
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXZhbHVl"
COOKIE = "session-cookie-value-4f2a9c"
CSRF = "csrf-token-value-77b1e0"
BODY_PASSWORD = "body-password-Hunter2-Hunter2"
QUERY_SECRET = "query-secret-5d0c1e"
USER_KEY = "bst_abc123_DoNotSendThisKeyAnywhere0"
POLLS = 200


@pytest.fixture(autouse=True)
def _no_client_left_behind() -> Iterator[None]:
    """sentry-sdk's client is process-wide: the next test starts without this one's."""
    yield
    client = sentry_sdk.get_global_scope().client
    sentry_sdk.get_global_scope().set_client(None)
    client.close(timeout=2)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            yield http


def crashing_app(settings: Settings) -> FastAPI:
    """The app with one extra route that fails the way a bug would, quoting configured secrets."""
    app = create_app(settings)

    @app.post("/probe/crash")
    async def crash(body: dict[str, Any]) -> None:
        upstream_key = settings.secret("OPENAI_API_KEY")
        signing = settings.secret("SECRET_KEY")
        raise RuntimeError(
            f"upstream refused key {upstream_key} (signing with {signing}); "
            f"caller key {USER_KEY}, token {BEARER}, {len(body)} fields"
        )

    return app


async def crash(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post(
        f"/probe/crash?token={QUERY_SECRET}&page=2",
        json={"email": "ana@example.org", "password": BODY_PASSWORD},
        headers={
            "Authorization": f"Bearer {BEARER}",
            "X-API-Key": STATIC_KEY,
            "Cookie": f"session={COOKIE}; theme=dark",
            "X-CSRF-Token": CSRF,
            "User-Agent": "probe/1.0",
        },
    )


async def received(capture: CaptureServer, count: int = 1) -> list[dict[str, Any]]:
    """Flush the SDK's queue, then the events that reached the capture server (bounded wait)."""
    for _ in range(POLLS):
        await asyncio.to_thread(sentry_sdk.flush, 2)
        events = capture.events()
        if len(events) >= count:
            return events
        time.sleep(0.01)
    return capture.events()


def settings_for(make_settings: SettingsFactory, dsn: str | None) -> Settings:
    return make_settings(
        SENTRY_DSN=dsn,
        OPENAI_API_KEY=OPENAI_KEY,
        JWT_ALGORITHM="HS256",
        SECRET_KEY=JWT_SECRET,
        API_KEYS=STATIC_KEY,
    )


async def test_an_unhandled_error_is_reported_without_any_secret(make_settings: SettingsFactory) -> None:
    with sentry_capture() as capture:
        settings = settings_for(make_settings, capture.dsn)
        await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
        async with running(crashing_app(settings)) as http:
            response = await crash(http)
            # The client gets the one error shape, and nothing of the failure.
            assert response.status_code == 500
            detail = response.json()["detail"]
            assert detail["error"] == "internal_error"
            assert detail["request_id"] == response.headers["x-request-id"]
            assert OPENAI_KEY not in response.text
            events = await received(capture)

        assert len(events) == 1
        event = events[0]
        assert event["environment"] == "test"
        assert event["release"] == f"bastion@{__version__}"
        exception = event["exception"]["values"][-1]
        assert exception["type"] == "RuntimeError"
        assert "[REDACTED]" in exception["value"] and "upstream refused key" in exception["value"]
        assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])
        request = event["request"]
        assert request["method"] == "POST"
        assert request["url"].endswith("/probe/crash")
        assert set(request) <= {"method", "url", "headers"}
        assert {name.lower() for name in request["headers"]} <= ALLOWED_HEADERS
        assert request["headers"].get("user-agent") == "probe/1.0"

        raw = capture.raw()
        assert b"RuntimeError" in raw  # the search below looks at real, decompressed bytes
        for secret in (
            OPENAI_KEY,
            JWT_SECRET,
            STATIC_KEY,
            BEARER,
            COOKIE,
            CSRF,
            BODY_PASSWORD,
            QUERY_SECRET,
            USER_KEY,
            "DoNotSendThisKeyAnywhere0",
        ):
            assert secret.encode() not in raw, secret


async def test_two_apps_in_one_process_report_only_to_their_own_dsn(make_settings: SettingsFactory) -> None:
    with sentry_capture("1") as first, sentry_capture("2") as second:
        reporting = settings_for(make_settings, first.dsn)
        await asyncio.to_thread(migrate.upgrade, reporting.database_url.get_secret_value())
        app_a = crashing_app(reporting)
        # Built after it, in the same process: one without SENTRY_DSN, one with another DSN.
        app_b = crashing_app(settings_for(make_settings, None))
        app_c = crashing_app(settings_for(make_settings, second.dsn))
        async with running(app_a) as a, running(app_b) as b, running(app_c) as c:
            assert (await crash(b)).status_code == 500
            assert (await crash(a)).status_code == 500
            assert len(await received(first)) == 1  # a's own error, though c was initialized last
            assert (await crash(c)).status_code == 500
            assert len(await received(second)) == 1
            await asyncio.to_thread(sentry_sdk.flush, 2)
        # b's error went nowhere; each server got exactly its own app's one error.
        assert len(first.events()) == 1 and len(second.events()) == 1
