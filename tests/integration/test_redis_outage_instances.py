# SPDX-License-Identifier: Apache-2.0
"""Redis (a single server, then every node of a Redis Cluster) stopped under traffic from two
instances sharing it, in both fail modes: every answer is 2xx, 401, 403, 429 or 503 with the error
shape (never a 500), and traffic recovers without a restart once Redis is back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bastion.db import migrate
from tests.conftest import SettingsFactory, serve_app
from tests.integration.auth.helpers import PASSWORD, bearer, identity_settings, user_session
from tests.support.servers import RedisClusterServers, RedisServer

pytestmark = pytest.mark.redis

ACCEPTABLE = {401, 403, 429, 503}
ROUNDS = 4
RECOVERY_ROUNDS = 60  # bounded: each round waits 0.1 s, far more than the 1 s skip window


async def make_key(http: httpx.AsyncClient, token: str) -> str:
    created = await http.post(
        "/api/keys", json={"name": "outage", "scopes": ["profile"]}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def traffic(email: str, token: str, key: str) -> list[tuple[str, str, dict[str, Any]]]:
    """What users send: a token, an API key (its cache's version counter), logins (the throttle)."""
    return [
        ("GET", "/api/auth/me", {"headers": bearer(token)}),
        ("GET", "/api/auth/me", {"headers": {"X-API-Key": key}}),
        ("POST", "/api/auth/login", {"json": {"email": email, "password": PASSWORD}}),
        ("POST", "/api/auth/login", {"json": {"email": email, "password": "wrong-" + PASSWORD}}),
        ("GET", "/health", {}),
    ]


async def round_of(
    clients: list[httpx.AsyncClient], requests: list[tuple[str, str, dict[str, Any]]]
) -> list[httpx.Response]:
    calls = [http.request(method, path, **kwargs) for http in clients for method, path, kwargs in requests]
    return list(await asyncio.gather(*calls))


def assert_answered(response: httpx.Response) -> None:
    """2xx, or one of the expected refusals with the error shape (never a 500)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    assert status in ACCEPTABLE, (status, response.request.url, response.text)
    detail = response.json()["detail"]
    assert {"error", "message", "request_id"} <= detail.keys()
    if status in (429, 503):
        assert detail["retry_after"] >= 1
        assert response.headers["retry-after"] == str(detail["retry_after"])


def healthy(responses: list[httpx.Response]) -> bool:
    # The wrong password is refused (401) or throttled (429) whatever Redis does.
    return all(r.status_code in (200, 401, 429) for r in responses) and all(
        r.status_code == 200 for r in responses if r.request.url.path == "/api/auth/me"
    )


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_two_instances_ride_out_a_redis_outage(
    mode: str, make_settings: SettingsFactory, dedicated_shared_redis: RedisServer | RedisClusterServers
) -> None:
    dedicated_redis = dedicated_shared_redis  # a single Redis, then a Redis Cluster
    settings = identity_settings(
        make_settings,
        REDIS_URL=dedicated_redis.url,
        RATE_LIMIT_FAIL_MODE=mode,
        RATE_LIMIT_REDIS_TIMEOUT_SECONDS=2,
        LOGIN_DELAY_AFTER_FAILURES=100,
    )
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings) as (_app_a, a), serve_app(settings) as (app_b, b):
        email = f"{mode}@example.com"
        _, tokens = await user_session(a, email)
        key = await make_key(a, tokens["access_token"])
        requests = traffic(email, tokens["access_token"], key)
        assert healthy(await round_of([a, b], requests))

        dedicated_redis.stop()
        during: list[httpx.Response] = []
        for _ in range(ROUNDS):
            during.extend(await round_of([a, b], requests))
        for response in during:
            assert_answered(response)
        me = [r for r in during if r.request.url.path == "/api/auth/me"]
        if mode == "closed":
            # Neither a token nor a key is accepted while its revocation cannot be checked.
            assert all(r.status_code == 503 for r in me)
        else:
            assert all(r.status_code == 200 for r in me)
            stats = app_b.state.identity.throttle.store.failover.stats
            assert stats["storage_failures"] >= 1 and stats["fallback_calls"] >= 1
        assert (await b.get("/health/ready")).json()["checks"]["redis"] == "unavailable"

        dedicated_redis.start()
        recovered = False
        for _ in range(RECOVERY_ROUNDS):
            if healthy(await round_of([a, b], requests)):
                recovered = True
                break
            await asyncio.sleep(0.1)
        assert recovered
        assert (await b.get("/health/ready")).json()["checks"]["redis"] == "ok"
