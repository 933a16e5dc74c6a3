# SPDX-License-Identifier: Apache-2.0
"""Redis stopped mid-run: fail closed answers 503, fail open falls back to local limits; never 500."""

from __future__ import annotations

import pytest

from tests.conftest import SettingsFactory
from tests.integration.ratelimit_serving import serve_limited
from tests.support.clock import FakeClock
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


async def test_fail_closed_answers_503_with_the_error_shape(
    make_settings: SettingsFactory, dedicated_redis: RedisServer
) -> None:
    settings = make_settings(
        REDIS_URL=dedicated_redis.url, RATE_LIMIT_FAIL_MODE="closed", RATE_LIMIT_PER_MINUTE=5
    )
    async with serve_limited(settings, FakeClock()) as (app, http):
        assert app.state.limiter.shared
        assert (await http.get("/test/login-like")).status_code == 200
        dedicated_redis.stop()
        for path in ("/test/ping", "/test/login-like", "/test/voice/in-flight"):
            response = await http.get(path)
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert detail["error"] == "service_unavailable"
            assert detail["retry_after"] >= 1
            assert response.headers["retry-after"] == str(detail["retry_after"])
            assert detail["request_id"] == response.headers["x-request-id"]
        assert (await http.get("/health")).status_code == 200
        assert app.state.limiter.stats["refused_unavailable"] >= 3


async def test_fail_open_falls_back_to_local_limits_and_counts_it(
    make_settings: SettingsFactory, dedicated_redis: RedisServer
) -> None:
    settings = make_settings(
        REDIS_URL=dedicated_redis.url, RATE_LIMIT_FAIL_MODE="open", RATE_LIMIT_PER_MINUTE=50
    )
    async with serve_limited(settings, FakeClock()) as (app, http):
        assert (await http.get("/test/login-like")).status_code == 200
        dedicated_redis.stop()
        statuses = [(await http.get("/test/login-like")).status_code for _ in range(5)]
        # Still limited, by the in-process fallback (which starts with a full bucket).
        assert statuses == [200, 200, 200, 429, 429]
        limited = await http.get("/test/login-like")
        assert limited.json()["detail"]["error"] == "rate_limited"
        assert "retry-after" in limited.headers
        assert app.state.limiter.stats["storage_failures"] >= 1
        assert app.state.limiter.stats["fallback_calls"] >= 5
        # Quotas and leases keep answering too.
        assert (await http.get("/test/voice/in-flight")).json() == {"in_flight": 0}


async def test_a_hung_redis_is_given_up_on_rather_than_waited_for(
    make_settings: SettingsFactory, dedicated_redis: RedisServer
) -> None:
    import signal

    settings = make_settings(
        REDIS_URL=dedicated_redis.url, RATE_LIMIT_FAIL_MODE="closed", RATE_LIMIT_REDIS_TIMEOUT_SECONDS=0.2
    )
    async with serve_limited(settings, FakeClock()) as (_app, http):
        assert (await http.get("/test/ping")).status_code == 200
        assert dedicated_redis.process is not None
        dedicated_redis.process.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            response = await http.get("/test/ping")
        finally:
            dedicated_redis.process.send_signal(signal.SIGCONT)
        assert response.status_code == 503
        assert response.json()["detail"]["error"] == "service_unavailable"
