# SPDX-License-Identifier: Apache-2.0
"""A Redis Cluster that speaks only TLS (``rediss+cluster://``): the app's clients, the fail-fast
ones of the request path included, reach every node under the configured CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from bastion.redis_client import connect, fail_fast_client
from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, user_session
from tests.support.servers import RedisClusterServers

pytestmark = [pytest.mark.redis, pytest.mark.redis_cluster]


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(root=tmp_path / "tls-cluster", tls=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_the_fail_fast_client_reaches_every_master_over_tls(tls_cluster: RedisClusterServers) -> None:
    client = fail_fast_client(connect(tls_cluster.url), 0.5)
    try:
        # Keys on all three masters (one slot each), each written through the sibling client.
        for tag in ("a", "b", "c", "d", "e", "f"):
            await client.set(f"{{{tag}}}:k", tag)
        assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
        assert [await client.get(f"{{{tag}}}:k") for tag in "abcdef"] == [t.encode() for t in "abcdef"]
    finally:
        await client.aclose()


async def test_the_app_shares_state_through_a_tls_cluster(
    make_settings: SettingsFactory, tls_cluster: RedisClusterServers
) -> None:
    settings = identity_settings(make_settings, REDIS_URL=tls_cluster.url)
    async with identity_app(settings) as (_app, http):
        ready = await http.get("/health/ready")
        assert ready.json()["checks"]["redis"] == "ok"
        _, tokens = await user_session(http, "tls@example.com")  # limiter, throttle, denylist
        assert (
            await http.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
        ).status_code == 204
        assert (await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))).status_code == 401


async def test_plain_tcp_to_a_tls_cluster_is_not_ready(
    make_settings: SettingsFactory, tls_cluster: RedisClusterServers
) -> None:
    plain = tls_cluster.url.replace("rediss+cluster://", "redis+cluster://").partition("?")[0]
    async with identity_app(identity_settings(make_settings, REDIS_URL=plain)) as (_app, http):
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unavailable"
