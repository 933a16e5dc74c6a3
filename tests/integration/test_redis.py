# SPDX-License-Identifier: Apache-2.0
"""The lifespan's Redis client against the real server (and a Redis Cluster), including an outage."""

from __future__ import annotations

import pytest

from tests.conftest import SettingsFactory, serve_app
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


async def test_ready_checks_redis(make_settings: SettingsFactory, each_redis_url: str) -> None:
    async with serve_app(make_settings(REDIS_URL=each_redis_url)) as (app, http):
        assert await app.state.redis.ping() is True
        response = await http.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_ready_reports_a_redis_outage_without_a_500(make_settings: SettingsFactory) -> None:
    server = RedisServer().start()
    try:
        async with serve_app(make_settings(REDIS_URL=server.url)) as (_app, http):
            assert (await http.get("/health/ready")).status_code == 200
            server.stop()
            response = await http.get("/health/ready")
            assert response.status_code == 503
            assert response.json() == {
                "status": "unavailable",
                "checks": {"database": "ok", "redis": "unavailable"},
                "model": "offline",
            }
            assert (await http.get("/health")).status_code == 200
    finally:
        server.stop()


async def test_wrong_redis_password_is_not_ready(make_settings: SettingsFactory, each_redis_url: str) -> None:
    wrong = each_redis_url.replace("://:", "://:wrong", 1)
    async with serve_app(make_settings(REDIS_URL=wrong)) as (_app, http):
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert "wrong" not in response.text
