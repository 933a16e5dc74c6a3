# SPDX-License-Identifier: Apache-2.0
"""Authentication answers from each instance's memory (``bastion.auth.cache``), yet a change made
anywhere reaches every instance: through Redis within a second, and without Redis (workers of one
machine, a command run beside them) within AUTH_CACHE_SECONDS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_key_revocation_instances import deployment, two_instances
from tests.integration.auth.helpers import PASSWORD
from tests.support.bastion_server import bastion_command
from tests.support.processes import REPO
from tests.support.servers import RedisServer

pytestmark = [pytest.mark.e2e]


def bastion(env: dict[str, str], *args: str) -> None:
    """One ``bastion`` command run beside the instances, as an operator would."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RATE_LIMIT_", "REDIS_"))}
    environment.update(env)
    done = subprocess.run(
        [*bastion_command(), *args], env=environment, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def status_within(
    seconds: float, expected: int, request: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response:
    """The first answer with ``expected`` status within ``seconds`` (or the last one seen)."""
    deadline = time.monotonic() + seconds
    while True:
        response = await request()
        if response.status_code == expected or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.02)


async def signed_in_on_both(
    first: httpx.AsyncClient, second: httpx.AsyncClient, email: str, *, register: bool = True
) -> dict[str, str]:
    account = {"email": email, "password": PASSWORD}
    if register:
        assert (await first.post("/api/auth/register", json=account)).status_code == 201
    token = (await first.post("/api/auth/login", json=account)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for client in (first, second, first, second):  # verified, then answered from each cache
        assert (await client.get("/api/auth/me", headers=headers)).status_code == 200
    return headers


@pytest.mark.redis
async def test_a_disable_or_role_change_by_command_reaches_every_instance_within_a_second(
    tmp_path: Path, redis_url: str
) -> None:
    env = deployment(tmp_path, redis_url)
    async with two_instances(tmp_path, redis_url, env) as (first, second):
        headers = await signed_in_on_both(first, second, "moved@example.com")
        bastion(env, "users", "set-role", "--email", "moved@example.com", "--role", "admin")
        for client in (first, second):
            answer = await status_within(1.0, 401, lambda c=client: c.get("/api/auth/me", headers=headers))
            assert answer.status_code == 401, "a token from before the role change was still accepted"

        headers = await signed_in_on_both(first, second, "moved@example.com", register=False)
        assert (await second.get("/api/auth/me", headers=headers)).json()["role"] == "admin"
        bastion(env, "users", "disable", "--email", "moved@example.com")
        for client in (first, second):
            answer = await status_within(1.0, 401, lambda c=client: c.get("/api/auth/me", headers=headers))
            assert answer.status_code == 401, "a disabled account's token was still accepted"


async def test_without_redis_a_command_reaches_every_instance_within_the_cache_lifetime(
    tmp_path: Path,
) -> None:
    # No shared version to watch: each instance's cache holds for AUTH_CACHE_SECONDS at most.
    env = {**deployment(tmp_path, None), "AUTH_CACHE_SECONDS": "1"}
    async with two_instances(tmp_path, None, env) as (first, second):
        headers = await signed_in_on_both(first, second, "alone@example.com")
        bastion(env, "users", "disable", "--email", "alone@example.com")
        for client in (first, second):
            answer = await status_within(2.0, 401, lambda c=client: c.get("/api/auth/me", headers=headers))
            assert answer.status_code == 401, "a disabled account's token outlived AUTH_CACHE_SECONDS"


@pytest.mark.redis
async def test_a_logout_holds_on_every_instance_after_redis_restarts_empty(
    tmp_path: Path, dedicated_redis: RedisServer
) -> None:
    env = deployment(tmp_path, dedicated_redis.url)
    async with two_instances(tmp_path, dedicated_redis.url, env) as (first, second):
        headers = await signed_in_on_both(first, second, "restart@example.com")
        assert (await first.post("/api/auth/logout", headers=headers)).status_code == 204
        for client in (first, second):
            answer = await status_within(1.0, 401, lambda c=client: c.get("/api/auth/me", headers=headers))
            assert answer.status_code == 401
        # Redis comes back with nothing: no denylist entry, no version. The database still says
        # the session ended.
        dedicated_redis.stop()
        dedicated_redis.start()
        for client in (first, second):
            for _ in range(5):
                answer = await client.get("/api/auth/me", headers=headers)
                assert answer.status_code in (401, 503), answer.text
                await asyncio.sleep(0.3)
            answer = await status_within(5.0, 401, lambda c=client: c.get("/api/auth/me", headers=headers))
            assert answer.status_code == 401, answer.text
