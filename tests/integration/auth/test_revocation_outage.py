# SPDX-License-Identifier: Apache-2.0
"""Redis down while tokens are checked: closed answers 503 (the token is not accepted), open answers
from this process with the failure logged and counted; never a 500."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from bastion.auth.runtime import revocations_for
from bastion.invalidation import FailoverVersionCounter, Watched, version_counter
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import assert_error, bearer, identity_app, identity_settings, user_session
from tests.support.servers import RedisServer, free_port

pytestmark = pytest.mark.redis


def assert_unavailable(response: httpx.Response) -> None:
    detail = assert_error(response, 503, "service_unavailable")
    assert detail["retry_after"] >= 1 and response.headers["retry-after"] == str(detail["retry_after"])


async def test_closed_a_token_whose_revocation_cannot_be_checked_is_refused_with_503(
    make_settings: SettingsFactory,
) -> None:
    # The limiter keeps answering (in process); only the denylist's Redis is unreachable, so the
    # answer comes from the authentication layer itself.
    settings = identity_settings(make_settings, RATE_LIMIT_FAIL_MODE="closed")
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "closed@example.com")
        identity = app.state.identity
        dead = Redis(host="127.0.0.1", port=free_port())
        # One Redis holds both the denylist and the version that tells whether a cached token
        # was revoked since: both are unreachable.
        identity.revocations = revocations_for(settings, dead, identity.clock)
        counter = version_counter(dead, "identity", fail_mode="closed")
        assert isinstance(counter, FailoverVersionCounter)
        identity.cache.version = Watched(counter, interval=settings.invalidation_poll_seconds)
        try:
            for _ in range(2):  # the first meets the refused connection, the second the skip window
                assert_unavailable(await http.get("/api/auth/me", headers=bearer(tokens["access_token"])))
            # Logging out cannot promise the token is dead everywhere: 503, and the client retries.
            assert_unavailable(await http.post("/api/auth/logout", headers=bearer(tokens["access_token"])))
            # Requests without a token do not depend on the denylist.
            assert (await http.get("/.well-known/jwks.json")).status_code == 200
            refused = (
                identity.revocations.failover.stats["refused_unavailable"]
                + counter.failover.stats["refused_unavailable"]
            )
            assert refused >= 3
        finally:
            await identity.revocations.aclose()
            await dead.aclose()


async def test_closed_with_redis_stopped_answers_503_never_500(
    make_settings: SettingsFactory, dedicated_redis: RedisServer
) -> None:
    settings = identity_settings(make_settings, REDIS_URL=dedicated_redis.url, RATE_LIMIT_FAIL_MODE="closed")
    async with identity_app(settings) as (_app, http):
        _, tokens = await user_session(http, "stopped@example.com")
        dedicated_redis.stop()
        for _ in range(3):
            assert_unavailable(await http.get("/api/auth/me", headers=bearer(tokens["access_token"])))


async def test_open_falls_back_to_this_process_and_counts_it(
    make_settings: SettingsFactory, dedicated_redis: RedisServer
) -> None:
    settings = identity_settings(make_settings, REDIS_URL=dedicated_redis.url, RATE_LIMIT_FAIL_MODE="open")
    async with identity_app(settings) as (app, http):
        _, tokens = await user_session(http, "open@example.com")
        _, other = await user_session(http, "open2@example.com")
        dedicated_redis.stop()
        me = await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        # A logout during the outage still holds on this instance.
        assert (await http.post("/api/auth/logout", headers=bearer(other["access_token"]))).status_code == 204
        assert (await http.get("/api/auth/me", headers=bearer(other["access_token"]))).status_code == 401
        stats = app.state.identity.revocations.failover.stats
        assert stats["storage_failures"] >= 1 and stats["fallback_calls"] >= 3
