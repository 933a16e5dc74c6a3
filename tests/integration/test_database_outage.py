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

from bastion.db import migrate
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
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The app on ``server`` (1 s database timeouts), a client and a signed-in user's access token."""
    settings = identity_settings(make_settings, DATABASE_URL=server.url(), DATABASE_TIMEOUT_SECONDS=1)
    await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings) as (_app, http):
        _, tokens = await user_session(http, email)
        yield http, str(tokens["access_token"])


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
    async with app_on(dedicated_postgres, make_settings, email) as (http, token):

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
    async with app_on(dedicated_postgres, make_settings, "stopped@example.com") as (http, token):
        await asyncio.to_thread(stop_fast, dedicated_postgres)
        for _ in range(3):
            response = await http.get("/api/sessions", headers=bearer(token))
            assert_unavailable_or_fine(response)
            assert response.status_code == 503
        # Authentication itself needs no database once the token was verified.
        assert (await http.get("/api/auth/me", headers=bearer(token))).status_code == 200
        await asyncio.to_thread(dedicated_postgres.start)
        assert await recovered(http, token)
