# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: settings built in one line, real PostgreSQL and Redis, an app with its lifespan.

The PostgreSQL and Redis servers are started once per run (per pytest-xdist worker: ``make test``
runs two, docs/ci.md) on loopback ports of their own (or taken from
BASTION_TEST_POSTGRES_URL / BASTION_TEST_REDIS_URL when set) and stopped at the end; so is a
three-master Redis Cluster (BASTION_TEST_REDIS_CLUSTER_URL), for the suites that run on both.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from bastion.app import create_app
from bastion.crypto import material
from bastion.db import migrate
from bastion.settings import Settings
from tests.support import parallel
from tests.support.lifespan import lifespan_of
from tests.support.servers import PostgresServer, RedisClusterServers, RedisServer, free_port, xdist_worker

SettingsFactory = Callable[..., Settings]


# -- the run on both cores (pytest-xdist, --dist loadgroup; docs/ci.md) --------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of a module that share a module-scoped fixture (a served instance, nginx, the
    browser) run on one worker, in their order: the fixture is made once, and the console's browser
    tests go on from where the one before left off. Other tests go to whichever worker is free."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        fixtures = getattr(item, "_fixtureinfo", None)
        definitions = fixtures.name2fixturedefs.values() if fixtures is not None else ()
        if any(chain[-1].scope == "module" for chain in definitions if chain):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    parallel.write_groups(config, items)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    parallel.name_groups_file(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return parallel.scheduler(config, log) if config.getoption("dist") == "loadgroup" else None


def pytest_unconfigure(config: pytest.Config) -> None:
    parallel.remove_groups_files(config)


_SCREENSHOTS: dict[str, None] = {}  # the browser tests' screenshots, in order (tests/e2e/conftest.py)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SCREENSHOTS.update((value, None) for name, value in report.user_properties if name == "screenshot")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SCREENSHOTS:
        terminalreporter.section("screenshots")
        for path in _SCREENSHOTS:
            terminalreporter.write_line(path)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the developer's shell: each test states its configuration."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """``make_settings(REDIS_URL=..., ...)``: test-environment settings with everything in tmp_path."""

    # One encryption key for the whole test: apps started one after the other over the same
    # database (a restart) open what the first one sealed, e-mail addresses included.
    encryption_key = material.encryption_key()

    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "var_dir": tmp_path / "var",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}",
            "database_encryption_key": encryption_key,
        }
        values.update({key.lower(): value for key, value in overrides.items()})
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return factory


# -- real servers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin URL of the run's PostgreSQL server."""
    if url := os.environ.get("BASTION_TEST_POSTGRES_URL"):
        yield url
        return
    # Not under pytest's tmp dir: as root the server runs as `postgres`, which cannot enter it.
    root = Path(tempfile.mkdtemp(prefix="bastion-pg-"))
    server = PostgresServer(root=root).start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    if url := os.environ.get("BASTION_TEST_REDIS_URL"):
        # Tests empty the database before they start: each pytest-xdist worker takes its own
        # (the URL's number plus the worker's).
        if worker := xdist_worker():
            parts = urlsplit(url)
            database = int(parts.path.strip("/") or 0) + worker
            url = urlunsplit(parts._replace(path=f"/{database}"))
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the run's three-master Redis Cluster (``redis+cluster://``), started on first use."""
    if url := os.environ.get("BASTION_TEST_REDIS_CLUSTER_URL"):
        if xdist_worker() is not None and os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") != "1":
            # A cluster has one database, which tests empty before they start: two workers
            # would empty it under each other's feet.
            pytest.fail("BASTION_TEST_REDIS_CLUSTER_URL needs a serial run: PYTEST_ARGS='-n 0'")
        yield url
        return
    cluster = RedisClusterServers(root=tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def dedicated_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may stop (outages) without touching the run's."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=[pytest.param("single"), pytest.param("cluster", marks=pytest.mark.redis_cluster)])
def dedicated_shared_redis(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[RedisServer | RedisClusterServers]:
    """A Redis, then a three-master Redis Cluster, of this test's own, which it may stop (an outage)
    and start again (``url``, ``stop()``, ``start()``)."""
    if request.param == "single":
        yield request.getfixturevalue("dedicated_redis")
        return
    cluster = RedisClusterServers(root=tmp_path / "redis-cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def dedicated_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, which the test may pause or stop."""
    # Not under pytest's tmp dir: as root the server runs as `postgres`, which cannot enter it.
    root = Path(tempfile.mkdtemp(prefix="bastion-pg-own-"))
    server = PostgresServer(root=root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["single", "cluster"])
async def dead_redis(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fail-fast client for a port nothing listens on, as a single Redis and as a Redis Cluster:
    every call is refused at once (outages of one component while the rest of the app keeps its
    in-process state). A Cluster client raises its own errors (no node reachable), not only
    connection errors, and each component's fail mode must meet those too."""
    from bastion.ratelimit.storage.redis import fail_fast_client
    from bastion.redis_client import connect

    scheme = "redis" if request.param == "single" else "redis+cluster"
    client = fail_fast_client(connect(f"{scheme}://127.0.0.1:{free_port()}"), 0.5)
    try:
        yield client
    finally:
        await client.aclose()


async def empty_redis(url: str) -> None:
    """Delete every key of the Redis (or every master of the Redis Cluster) at ``url``."""
    from redis.asyncio.cluster import RedisCluster

    from bastion.redis_client import connect

    client = connect(url)
    try:
        if isinstance(client, RedisCluster):
            await client.flushall(target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def redis_url(redis_server: str) -> AsyncIterator[str]:
    """The run's Redis, emptied before each test."""
    await empty_redis(redis_server)
    yield redis_server


@pytest.fixture
async def redis_cluster_url(redis_cluster_server: str) -> AsyncIterator[str]:
    """The run's Redis Cluster, every master emptied before each test."""
    await empty_redis(redis_cluster_server)
    yield redis_cluster_server


# The backends of a shared-state contract suite: in process, the run's Redis, its Redis Cluster.
REDIS_BACKENDS = (
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=(pytest.mark.redis, pytest.mark.redis_cluster)),
)
BACKENDS = ("memory", *REDIS_BACKENDS)


def backend_redis_url(request: pytest.FixtureRequest, *, emptied: bool = True) -> str | None:
    """For a fixture parametrized by BACKENDS: the URL of its Redis (None for memory).

    ``emptied`` goes through the emptying fixture, which an async fixture cannot request (it
    runs inside the event loop): those pass ``emptied=False`` and ``await empty_redis(url)``.
    """
    if request.param == "memory":
        return None
    if emptied:
        name = "redis_url" if request.param == "redis" else "redis_cluster_url"
    else:
        name = "redis_server" if request.param == "redis" else "redis_cluster_server"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=REDIS_BACKENDS)
def each_redis_url(request: pytest.FixtureRequest) -> str:
    """The run's single Redis, then its three-master Cluster, emptied: a test taking this runs
    against both."""
    return str(backend_redis_url(request))


async def _admin_execute(admin_url: str, statement: str) -> None:
    import asyncpg

    url = make_url(admin_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (sync, so any fixture may depend on it)."""
    name = f"t_{secrets.token_hex(6)}"
    asyncio.run(_admin_execute(postgres_server, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin_execute(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend in turn: tests using it run on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
async def migrated_database_url(database_url: str) -> str:
    await asyncio.to_thread(migrate.upgrade, database_url)
    return database_url


# -- the app -----------------------------------------------------------------------------------


@asynccontextmanager
async def serve_app(
    settings: Settings, *, client: tuple[str, int] = ("127.0.0.1", 50000), base_url: str = "http://localhost"
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and an HTTP client talking to it in-process."""
    app = create_app(settings)
    async with lifespan_of(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield app, http


@pytest.fixture
async def client(make_settings: SettingsFactory, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client for an app on default test settings with a migrated SQLite database."""
    settings = make_settings()
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings) as (_app, http):
        yield http
