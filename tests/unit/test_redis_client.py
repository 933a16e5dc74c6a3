# SPDX-License-Identifier: Apache-2.0
"""REDIS_URL names one server or a Cluster; one factory makes the client for either."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection

from bastion.redis_client import RedisTarget, check_url, connect, describe, fail_fast_client
from bastion.settings import ConfigurationError
from tests.conftest import SettingsFactory

TLS_CLUSTER_WITH_PASSWORD = "rediss+cluster://u:pw@a:7000,b:7000"  # pragma: allowlist secret


async def test_a_single_server_url_makes_a_redis_client() -> None:
    client = connect("redis://:pw@127.0.0.1:6379/2", socket_timeout=2)  # pragma: allowlist secret
    try:
        assert type(client) is Redis
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (2, "pw", 2)
    finally:
        await client.aclose()


async def test_a_cluster_url_makes_a_cluster_client_seeded_with_every_node() -> None:
    nodes = "10.0.0.1:7000,node-b:7001,[::1]:7002"
    url = f"rediss+cluster://app:s%40cret@{nodes}/?ssl_cert_reqs=none"  # pragma: allowlist secret
    client = connect(url, socket_timeout=2)
    try:
        assert isinstance(client, RedisCluster)
        seeds = [(node.host, node.port) for node in client.startup_nodes]
        assert seeds == [("10.0.0.1", 7000), ("node-b", 7001), ("::1", 7002)]
        made = client.connection_kwargs
        assert (made["username"], made["password"]) == ("app", "s@cret")  # pragma: allowlist secret
        assert made["connection_class"] is SSLConnection and made["ssl_cert_reqs"] == "none"
        assert made["socket_timeout"] == 2
    finally:
        await client.aclose()


async def test_the_fail_fast_sibling_of_a_cluster_client_keeps_its_nodes_credentials_and_tls() -> None:
    client = connect("rediss+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001")  # pragma: allowlist secret
    fast = fail_fast_client(client, 0.25)
    try:
        assert isinstance(fast, RedisCluster) and fast is not client
        assert [node.port for node in fast.startup_nodes] == [7000, 7001]
        made = fast.connection_kwargs
        assert made["password"] == "pw"  # pragma: allowlist secret
        assert made["connection_class"] is SSLConnection
        assert (made["socket_timeout"], made["socket_connect_timeout"]) == (0.25, 0.25)
        assert fast.retry.get_retries() == 0
    finally:
        await fast.aclose()
        await client.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://:pw@host-without-port",
        "redis+cluster://a:7000,b:notaport",
        "redis+cluster://a:7000/3",  # a Cluster has database 0 only
        "http://a:7000",
    ],
)
def test_malformed_urls_are_refused(url: str, make_settings: SettingsFactory) -> None:
    with pytest.raises(ValueError):
        check_url(url)
    with pytest.raises(ConfigurationError, match="REDIS_URL is malformed"):
        make_settings(REDIS_URL=url)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://:pw@cache:6379/0", RedisTarget(False, False, ("cache",), True)),
        ("rediss://cache:6380/0?password=pw", RedisTarget(False, True, ("cache",), True)),
        ("unix:///run/redis.sock", RedisTarget(False, False, (), False)),
        ("redis+cluster://a:7000,b:7000", RedisTarget(True, False, ("a", "b"), False)),
        (TLS_CLUSTER_WITH_PASSWORD, RedisTarget(True, True, ("a", "b"), True)),
    ],
)
def test_describe_names_hosts_tls_and_password(url: str, target: RedisTarget) -> None:
    check_url(url)
    assert describe(url) == target


def test_a_cluster_password_is_scrubbed_like_a_single_servers(make_settings: SettingsFactory) -> None:
    url = "redis+cluster://:cluster%2Fpassword-1@127.0.0.1:7000,127.0.0.1:7001"  # pragma: allowlist secret
    values = make_settings(REDIS_URL=url).secret_values()
    assert {"cluster%2Fpassword-1", "cluster/password-1"} <= set(values)
