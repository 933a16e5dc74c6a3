# SPDX-License-Identifier: Apache-2.0
"""Through the whole HTTP stack, each component whose Redis cannot answer (the rest of the app on
in-process state, so the answer comes from that component): closed answers 503 with Retry-After
and the error shape, open serves from this process; never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from bastion.auth.throttle import attempt_store_for
from bastion.failover import FailMode
from bastion.invalidation import Watched, version_counter
from tests.conftest import SettingsFactory
from tests.integration.auth import helpers
from tests.integration.auth.helpers import PASSWORD, bearer


def assert_unavailable(response: httpx.Response) -> None:
    detail = helpers.assert_error(response, 503, "service_unavailable")
    assert detail["retry_after"] >= 1 and response.headers["retry-after"] == str(detail["retry_after"])


@asynccontextmanager
async def signed_in(
    make_settings: SettingsFactory, mode: FailMode, email: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    """An app in ``mode`` on in-process state, a client, and a signed-in user's access token."""
    settings = helpers.identity_settings(make_settings, RATE_LIMIT_FAIL_MODE=mode)
    async with helpers.identity_app(settings) as (app, http):
        _, tokens = await helpers.user_session(http, email)
        yield app, http, str(tokens["access_token"])


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_password_throttle_without_its_redis(
    mode: FailMode, make_settings: SettingsFactory, dead_redis: Redis
) -> None:
    async with signed_in(make_settings, mode, f"throttle-{mode}@example.com") as (app, http, token):
        app.state.identity.throttle.store = attempt_store_for(dead_redis, fail_mode=mode)
        login = {"email": f"throttle-{mode}@example.com", "password": PASSWORD}
        change = {"current_password": PASSWORD, "new_password": "Another-Horse-7y?"}
        responses = [
            await http.post("/api/auth/login", json=login),
            await http.post("/api/auth/login", json={**login, "password": "wrong"}),
        ]
        if mode == "closed":
            for response in responses:
                assert_unavailable(response)
            assert_unavailable(await http.post("/api/auth/password", json=change, headers=bearer(token)))
        else:
            assert [r.status_code for r in responses] == [200, 401]


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_api_key_cache_without_its_version_counter(
    mode: FailMode, make_settings: SettingsFactory, dead_redis: Redis
) -> None:
    async with signed_in(make_settings, mode, f"keys-{mode}@example.com") as (app, http, token):
        created = await http.post(
            "/api/keys", json={"name": "k", "scopes": ["profile"]}, headers=bearer(token)
        )
        assert created.status_code == 201, created.text
        key = {"X-API-Key": created.json()["key"]}
        assert (await http.get("/api/auth/me", headers=key)).status_code == 200
        app.state.api_keys.version = Watched(
            version_counter(dead_redis, "api_keys", fail_mode=mode), interval=0.0
        )
        for _ in range(2):
            response = await http.get("/api/auth/me", headers=key)
            if mode == "closed":
                # A key whose revocation cannot be learned of is not accepted.
                assert_unavailable(response)
            else:
                assert response.status_code == 200, response.text
