# SPDX-License-Identifier: Apache-2.0
"""The one way Bastion connects to Redis: a single server or a Redis Cluster, from REDIS_URL.

A single server is ``redis://host:port/db``, ``rediss://`` (TLS) or ``unix://``, as redis-py reads
them. A Cluster is the same URL with ``+cluster`` in its scheme and every seed node in the host
part, comma-separated::

    redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000
    rediss+cluster://node-a:6380,node-b:6380      (TLS to every node)

Credentials go before the first node as in any Redis URL (``user:password@``). One seed is enough
to discover the cluster; several let the client start while one is down. The credentials, TLS and
query options (``?ssl_cert_reqs=...``, ...) apply to every node, and a Cluster has only database 0.

Keys are Cluster-safe everywhere: whatever one script or transaction touches shares one hash tag
(``{...}``), so one decision is still one round trip to one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import SplitResult, urlsplit, urlunsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

RedisClient: TypeAlias = Redis | RedisCluster

# The scheme of a Cluster URL and the single-server scheme whose meaning (TLS or not) it carries.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
URL_FORMS = (
    "redis://[:password@]host:port/db, rediss://, unix://, "
    "or redis+cluster://[:password@]host:port,host:port (rediss+cluster:// for TLS)"
)

# What a Cluster client's connections were made with that a sibling client must repeat.
_NODE_OPTIONS = (
    "username",
    "password",
    "credential_provider",
    "client_name",
    "encoding",
    "encoding_errors",
    "decode_responses",
    "health_check_interval",
    "socket_keepalive",
    "socket_keepalive_options",
    "socket_read_size",
    "protocol",
)
_SSL_OPTIONS = (
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_cert_reqs",
    "ssl_include_verify_flags",
    "ssl_exclude_verify_flags",
    "ssl_certfile",
    "ssl_check_hostname",
    "ssl_keyfile",
    "ssl_min_version",
    "ssl_ciphers",
)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where a REDIS_URL points, without its secrets (for checks and messages)."""

    cluster: bool
    tls: bool
    hosts: tuple[str, ...]  # empty for a unix socket
    has_password: bool


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


def _split_cluster(url: str) -> tuple[SplitResult, str, list[tuple[str, int]]]:
    """The URL's parts, its ``user:password`` (or ""), and its seed nodes."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        node = urlsplit(f"//{item.strip()}")
        port = node.port  # raises ValueError on a port that is not a number in range
        if not node.hostname or port is None:
            raise ValueError("every Redis Cluster node is host:port")
        nodes.append((node.hostname, port))
    return parts, userinfo, nodes


def _cluster_options(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The seed nodes and the client options of a ``redis+cluster://`` URL."""
    parts, userinfo, nodes = _split_cluster(url)
    scheme = CLUSTER_SCHEMES[parts.scheme.lower()]
    host, port = nodes[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{userinfo}@{address}" if userinfo else address
    # redis-py reads the credentials and query options from the first node's single-server URL.
    options: dict[str, Any] = dict(parse_url(urlunsplit((scheme, netloc, parts.path, parts.query, ""))))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("db", 0):
        raise ValueError("a Redis Cluster has only database 0")
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return nodes, options


def check_url(url: str) -> None:
    """Raise ValueError when ``url`` is not a REDIS_URL Bastion can connect with."""
    if is_cluster_url(url):
        _cluster_options(url)
    else:
        parse_url(url)


def describe(url: str) -> RedisTarget:
    """What ``url`` names: cluster or not, TLS or not, which hosts, with a password or not."""
    scheme = url.partition("://")[0].lower()
    if scheme in CLUSTER_SCHEMES:
        parts, userinfo, nodes = _split_cluster(url)
        password = bool(userinfo.partition(":")[2])
        hosts = tuple(host for host, _ in nodes)
        tls = CLUSTER_SCHEMES[scheme] == "rediss"
    else:
        parts = urlsplit(url)
        password = bool(parts.password)
        hosts = () if scheme == "unix" or not parts.hostname else (parts.hostname,)
        tls = scheme == "rediss"
    password = password or "password=" in parts.query
    return RedisTarget(scheme in CLUSTER_SCHEMES, tls, hosts, password)


def connect(url: str, **options: Any) -> RedisClient:
    """A client for REDIS_URL: ``Redis`` for one server, ``RedisCluster`` for a Cluster URL.

    ``options`` (timeouts, ``health_check_interval``, ...) apply to every connection either way.
    Nothing is contacted until the first command.
    """
    if not is_cluster_url(url):
        return Redis.from_url(url, **options)
    nodes, url_options = _cluster_options(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes], **{**options, **url_options}
    )


def fail_fast_client(redis: RedisClient, timeout: float) -> RedisClient:
    """A client for the same server (or Cluster) as ``redis`` whose every connect, read and write
    gives up after ``timeout`` seconds. It owns its own connections; close it with ``aclose``."""
    # No retries with backoff either: the fail mode is the answer to an unreachable Redis, and a
    # retry loop would hold every request for its whole backoff schedule first.
    fast: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if isinstance(redis, RedisCluster):
        made = redis.connection_kwargs
        options = {name: made[name] for name in _NODE_OPTIONS if name in made}
        if made.get("connection_class") is SSLConnection:
            options.update(ssl=True, **{name: made[name] for name in _SSL_OPTIONS if name in made})
        seeds = [ClusterNode(node.host, node.port) for node in redis.startup_nodes]
        return RedisCluster(startup_nodes=seeds, **options, **fast)
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.update(fast)
    return Redis.from_pool(ConnectionPool(connection_class=pool.connection_class, **kwargs))
