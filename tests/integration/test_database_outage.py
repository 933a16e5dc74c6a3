# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL paused (every server process SIGSTOPped: it accepts nothing and answers nothing)
under traffic: requests answer 503 with Retry-After and the error shape, never a 500, within the
engine's timeouts; nothing is half-written; the pool recovers once the server resumes.

The server is this test's own, never the run's shared one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.db import engine as engine_module
from bastion.db import migrate
from bastion.db.engine import create_engine
from bastion.db.errors import unavailable
from tests.conftest import SettingsFactory, serve_app
from tests.integration.auth.helpers import PASSWORD, bearer, identity_settings, user_session
from tests.support.servers import PostgresServer, paused

pytestmark = pytest.mark.postgres

RECOVERY_ROUNDS = 100  # bounded: each waits 0.1 s


def stop_fast(server: PostgresServer) -> None:
    """Fast shutdown (SIGINT: sessions are disconnected), waited for until the cluster is down."""
    pid_file = server.root / "data" / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
    assert server.process is not None
    server.process.wait(timeout=30)
    for _ in range(300):  # bounded: the pid file goes with the postmaster
        if not pid_file.exists():
            return
        time.sleep(0.1)
    raise RuntimeError("PostgreSQL did not shut down")


def assert_unavailable_or_fine(response: httpx.Response) -> None:
    if response.status_code < 300:
        return
    assert response.status_code == 503, (response.request.url, response.status_code, response.text)
    detail = response.json()["detail"]
    assert detail["error"] == "service_unavailable"
    assert {"message", "request_id"} <= detail.keys()
    assert detail["retry_after"] >= 1 and response.headers["retry-after"] == str(detail["retry_after"])


@contextlib.asynccontextmanager
async def app_on(
    server: PostgresServer, make_settings: SettingsFactory, email: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    """The app on ``server`` (1 s database timeouts), a client and a signed-in user's access token."""
    settings = identity_settings(make_settings, DATABASE_URL=server.url(), DATABASE_TIMEOUT_SECONDS=1)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings) as (app, http):
        _, tokens = await user_session(http, email)
        yield app, http, str(tokens["access_token"])


async def recovered(http: httpx.AsyncClient, token: str) -> bool:
    """Whether the user's requests are served again within a bounded number of tries."""
    for _ in range(RECOVERY_ROUNDS):
        # A read of the user's rows: answered only when the database is.
        listed = await http.get("/api/sessions", headers=bearer(token))
        assert_unavailable_or_fine(listed)
        if listed.status_code == 200:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_paused_database_answers_503_and_recovers_after_resume(
    make_settings: SettingsFactory, dedicated_postgres: PostgresServer
) -> None:
    email = "paused@example.com"
    async with app_on(dedicated_postgres, make_settings, email) as (_app, http, token):

        def traffic(round_: int) -> list[Awaitable[httpx.Response]]:
            return [
                http.get("/api/auth/me", headers=bearer(token)),
                http.post("/api/auth/login", json={"email": email, "password": PASSWORD}),
                # A write: it must not be half-done when the server comes back.
                http.post(
                    "/api/auth/register", json={"email": f"new{round_}@example.com", "password": PASSWORD}
                ),
            ]

        with paused(dedicated_postgres):
            during = [*await asyncio.gather(*traffic(0)), *await asyncio.gather(*traffic(1))]
        for response in during:
            assert_unavailable_or_fine(response)
        assert sum(r.status_code == 503 for r in during) >= 4

        assert await recovered(http, token)
        login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        # The registrations refused during the pause left nothing behind: each can be made now.
        for round_ in (0, 1):
            created = await http.post(
                "/api/auth/register", json={"email": f"new{round_}@example.com", "password": PASSWORD}
            )
            assert created.status_code == 201, created.text


async def test_a_stopped_database_answers_503_and_a_restarted_one_is_used_again(
    make_settings: SettingsFactory, dedicated_postgres: PostgresServer
) -> None:
    async with app_on(dedicated_postgres, make_settings, "stopped@example.com") as (_app, http, token):
        await asyncio.to_thread(stop_fast, dedicated_postgres)
        for _ in range(3):
            response = await http.get("/api/sessions", headers=bearer(token))
            assert_unavailable_or_fine(response)
            assert response.status_code == 503
        # Authentication itself needs no database once the token was verified.
        assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 200
        await asyncio.to_thread(dedicated_postgres.start)
        assert await recovered(http, token)


async def test_a_token_verified_while_the_database_is_down_is_a_503_for_every_client(
    make_settings: SettingsFactory, dedicated_postgres: PostgresServer
) -> None:
    """A token not in the authentication cache is checked against the database (one read batch):
    stopped or paused, that is a 503 with the error shape for every client at once, never a 500,
    and the token works again once the database is back."""
    async with app_on(dedicated_postgres, make_settings, "cold@example.com") as (app, http, token):
        headers = bearer(token)
        cache = app.state.identity.service().cache

        async def clients() -> list[httpx.Response]:
            return list(await asyncio.gather(*(http.get("/api/auth/me", headers=headers) for _ in range(8))))

        for outage in ("paused", "stopped"):
            cache.clear()  # the token is not verified yet on this instance
            if outage == "paused":
                with paused(dedicated_postgres):
                    answers = await clients()
            else:
                await asyncio.to_thread(stop_fast, dedicated_postgres)
                answers = await clients()
                await asyncio.to_thread(dedicated_postgres.start)
            for response in answers:
                assert_unavailable_or_fine(response)
            assert {response.status_code for response in answers} == {503}, outage
            assert await recovered(http, token)
            assert (await http.get("/api/auth/me", headers=headers)).status_code == 200


@contextlib.asynccontextmanager
async def pinged_engine(server: PostgresServer) -> AsyncIterator[tuple[AsyncEngine, list[object]]]:
    """An engine on ``server`` whose pings are counted."""
    engine = create_engine(server.url(), timeout=2)
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    try:
        yield engine, pings
    finally:
        await engine.dispose()


async def select_one(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT 1"))).scalar_one())


async def test_connections_in_use_are_not_pinged_and_idle_ones_are(
    dedicated_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ping is three round trips on asyncpg: a connection returned moments ago goes without one.
    async with pinged_engine(dedicated_postgres) as (engine, pings):
        for _ in range(5):
            assert await select_one(engine) == 1
        assert pings == []
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        for _ in range(3):
            assert await select_one(engine) == 1
        assert len(pings) == 3


async def test_an_idle_connection_dropped_by_a_restart_is_replaced_unseen(
    dedicated_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with pinged_engine(dedicated_postgres) as (engine, pings):
        # Several pooled connections, all then dropped by the server's restart.
        await asyncio.gather(*(select_one(engine) for _ in range(4)))
        await asyncio.to_thread(stop_fast, dedicated_postgres)
        await asyncio.to_thread(dedicated_postgres.start)
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)  # they sat idle meanwhile
        assert [await select_one(engine) for _ in range(4)] == [1, 1, 1, 1]
        assert pings  # the first checkout's ping failed; the pool connected anew


async def test_a_busy_connection_dropped_by_a_restart_fails_one_statement_as_an_outage(
    dedicated_postgres: PostgresServer,
) -> None:
    # Used moments before the restart, it is not pinged: its statement fails as the server's
    # absence would (an outage, the 503), and SQLAlchemy replaces the pool's connections.
    async with pinged_engine(dedicated_postgres) as (engine, pings):
        await asyncio.gather(*(select_one(engine) for _ in range(3)))
        await asyncio.to_thread(stop_fast, dedicated_postgres)
        await asyncio.to_thread(dedicated_postgres.start)
        with pytest.raises(Exception) as failed:
            await select_one(engine)
        assert unavailable(failed.value)
        assert [await select_one(engine) for _ in range(3)] == [1, 1, 1]
        assert pings == []


async def test_a_reply_the_database_cannot_store_is_a_503_and_nothing_is_half_written(
    make_settings: SettingsFactory, dedicated_postgres: PostgresServer
) -> None:
    """The server goes away while the model answers: the reply's statement (alone in autocommit)
    fails as an outage, the user's message (committed before the call) is kept, no place is lost
    or taken twice, and the next message follows it once the server is back."""
    async with app_on(dedicated_postgres, make_settings, "replies@example.com") as (app, http, token):
        auth = bearer(token)
        sid = (await http.post("/api/sessions", json={}, headers=auth)).json()["id"]
        url = f"/api/sessions/{sid}/messages"
        assert (await http.post(url, json={"content": "before"}, headers=auth)).status_code == 200
        provider = app.state.llm
        complete = provider.complete

        async def answered_as_the_server_stops(*args: object) -> object:
            reply = await complete(*args)
            await asyncio.to_thread(stop_fast, dedicated_postgres)
            return reply

        provider.complete = answered_as_the_server_stops
        during = await http.post(url, json={"content": "during"}, headers=auth)
        assert_unavailable_or_fine(during)
        assert during.status_code == 503
        provider.complete = complete
        await asyncio.to_thread(dedicated_postgres.start)
        assert await recovered(http, token)
        assert (await http.post(url, json={"content": "after"}, headers=auth)).status_code == 200
        history = (await http.get(url, headers=auth)).json()["items"]
        session = (await http.get(f"/api/sessions/{sid}", headers=auth)).json()
    assert [(item["seq"], item["role"]) for item in history] == [
        (1, "user"),
        (2, "assistant"),
        (3, "user"),
        (4, "user"),
        (5, "assistant"),
    ]
    assert [item["content"] for item in history if item["role"] == "user"] == ["before", "during", "after"]
    assert session["message_count"] == 5
