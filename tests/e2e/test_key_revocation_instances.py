# SPDX-License-Identifier: Apache-2.0
"""Two real instances sharing Redis: a key revoked on one is refused by the other within a second."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
import pytest

from bastion.db import migrate
from tests.integration.auth.helpers import CHEAP_HASHING, PASSWORD
from tests.support.processes import uvicorn_process

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
FACTORY = "bastion.app:create_app"


async def test_revocation_on_one_instance_reaches_the_other_within_a_second(
    tmp_path: Path, redis_url: str
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'bastion.db'}"
    await asyncio.to_thread(migrate.upgrade, database)
    env = {
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        # Both instances hash keys with the same pepper, as a real deployment's would.
        "API_KEY_SALT": secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
        **{name: str(value) for name, value in CHEAP_HASHING.items()},
    }
    with uvicorn_process(FACTORY, env) as first_url, uvicorn_process(FACTORY, env) as second_url:
        async with (
            httpx.AsyncClient(base_url=first_url) as first,
            httpx.AsyncClient(base_url=second_url) as second,
        ):
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
            deadline = time.monotonic() + 1.0
            refused = False
            while not refused and time.monotonic() < deadline:
                refused = (await second.get("/api/sessions", headers=key)).status_code == 401
                if not refused:
                    await asyncio.sleep(0.02)
            assert refused, "the second instance still accepted the key a second after revocation"
            assert (await first.get("/api/sessions", headers=key)).status_code == 401
