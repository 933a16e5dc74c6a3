# SPDX-License-Identifier: Apache-2.0
"""Two real instances sharing Redis: a key revoked, or a session ended, on one is refused by the
other within a second."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from bastion.crypto import material
from bastion.db import migrate
from tests.integration.auth.helpers import CHEAP_HASHING, PASSWORD
from tests.support.processes import uvicorn_process

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
FACTORY = "bastion.app:create_app"


def deployment(tmp_path: Path, redis_url: str | None) -> dict[str, str]:
    """The environment every process of one deployment shares (database, Redis, secrets)."""
    env = {
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}",
        # Both instances sign, verify and hash with the same secrets, as a real deployment's would.
        **material.generate_all(),
        "API_KEY_SALT": secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
        **{name: str(value) for name, value in CHEAP_HASHING.items()},
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


@asynccontextmanager
async def two_instances(
    tmp_path: Path, redis_url: str | None, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """Two uvicorn processes of one deployment (database, Redis, secrets shared); a client each."""
    env = env if env is not None else deployment(tmp_path, redis_url)
    await asyncio.to_thread(migrate.upgrade, env["DATABASE_URL"])
    with uvicorn_process(FACTORY, env) as first_url, uvicorn_process(FACTORY, env) as second_url:
        async with (
            httpx.AsyncClient(base_url=first_url) as first,
            httpx.AsyncClient(base_url=second_url) as second,
        ):
            yield first, second


async def refused_within_a_second(request: Callable[[], Awaitable[httpx.Response]]) -> bool:
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if (await request()).status_code == 401:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_revocation_on_one_instance_reaches_the_other_within_a_second(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_instances(tmp_path, redis_url) as (first, second):
        account = {"email": "owner@example.com", "password": PASSWORD}
        assert (await first.post("/api/auth/register", json=account)).status_code == 201
        token = (await first.post("/api/auth/login", json=account)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        created = (
            await first.post("/api/keys", json={"name": "app", "scopes": ["chat"]}, headers=auth)
        ).json()
        key = {"X-API-Key": created["key"]}
        # Both instances know (and have cached) the key.
        for client in (first, second, first, second):
            assert (await client.get("/api/sessions", headers=key)).status_code == 200

        revoked = await first.delete(f"/api/keys/{created['id']}", headers=auth)
        assert revoked.status_code == 200
        assert await refused_within_a_second(lambda: second.get("/api/sessions", headers=key)), (
            "the second instance still accepted the key a second after revocation"
        )
        assert (await first.get("/api/sessions", headers=key)).status_code == 401


async def test_a_session_ended_on_one_instance_is_refused_by_the_other_within_a_second(
    tmp_path: Path, redis_url: str
) -> None:
    async with two_instances(tmp_path, redis_url) as (first, second):
        account = {"email": "traveller@example.com", "password": PASSWORD}
        assert (await first.post("/api/auth/register", json=account)).status_code == 201
        pair = (await first.post("/api/auth/login", json=account)).json()
        # Refreshed on the other instance: A1 (from the login) and A2 are both live.
        rotated = await second.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        tokens = [pair["access_token"], rotated.json()["access_token"]]
        for client in (first, second):
            for token in tokens:
                me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
                assert me.status_code == 200, me.text

        logout = await first.post("/api/auth/logout", headers={"Authorization": f"Bearer {tokens[1]}"})
        assert logout.status_code == 204
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}

            def on_second(headers: dict[str, str] = headers) -> Awaitable[httpx.Response]:
                return second.get("/api/auth/me", headers=headers)

            assert await refused_within_a_second(on_second), (
                "the second instance still accepted a token of the ended session a second later"
            )
            assert (await first.get("/api/auth/me", headers=headers)).status_code == 401
