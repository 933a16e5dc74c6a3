# SPDX-License-Identifier: Apache-2.0
"""Helpers for identity tests: cheap hashing (through settings only), accounts, assertions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from bastion.audit.models import AuditRecord
from bastion.auth.principal import Role
from bastion.auth.service import Context
from bastion.db import migrate
from bastion.settings import Settings
from tests.conftest import SettingsFactory, serve_app

PASSWORD = "Correct-Horse-9x!"
NEW_PASSWORD = "Another-Battery-7y?"
# Test speed comes from settings, never from weaker defaults.
CHEAP_HASHING: dict[str, Any] = {"ARGON2_MEMORY_KIB": 256, "ARGON2_TIME_COST": 1, "BCRYPT_ROUNDS": 4}


# Flows that are not about limits run under generous ones; tests of the limits set their own.
GENEROUS_LIMITS: dict[str, Any] = {
    "RATE_LIMIT_REGISTER": "1000/minute",
    "RATE_LIMIT_LOGIN": "1000/minute",
    "RATE_LIMIT_REFRESH": "1000/minute",
    "RATE_LIMIT_PASSWORD_RESET": "1000/minute",
    "RATE_LIMIT_PASSWORD_CHANGE": "1000/minute",
    "RATE_LIMIT_BLOCK_AUTH_FAILURES": 0,
}


def identity_settings(make_settings: SettingsFactory, **overrides: Any) -> Settings:
    return make_settings(**{**CHEAP_HASHING, **GENEROUS_LIMITS, **overrides})


@asynccontextmanager
async def identity_app(
    settings: Settings,
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    migrate_first: bool = True,
    base_url: str = "http://localhost",
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    if migrate_first:
        await asyncio.to_thread(migrate.upgrade, settings.database_url.get_secret_value())
    async with serve_app(settings, client=client, base_url=base_url) as (app, http):
        yield app, http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await http.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(http: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await http.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def user_session(http: httpx.AsyncClient, email: str) -> tuple[str, dict[str, Any]]:
    """Register and log in: (user id, token pair)."""
    await register(http, email)
    tokens = await login(http, email)
    me = await http.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    return str(me.json()["id"]), tokens


async def make_admin(app: FastAPI, http: httpx.AsyncClient, email: str) -> tuple[str, dict[str, Any]]:
    user_id, _ = await user_session(http, email)
    await app.state.identity.service().set_role(user_id, Role.ADMIN, Context(), actor_id=None)
    return user_id, await login(http, email)


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape, with the status (and code) expected; never a 500."""
    assert response.status_code == status, (response.status_code, response.text)
    detail: dict[str, Any] = response.json()["detail"]
    assert {"error", "message", "request_id"} <= detail.keys()
    if code is not None:
        assert detail["error"] == code, detail
    if status == 401:
        assert response.headers.get("www-authenticate", "").startswith("Bearer")
    return detail


async def audit_events(app: FastAPI, event: str | None = None) -> list[AuditRecord]:
    async with app.state.sessionmaker() as session:
        query = select(AuditRecord).order_by(AuditRecord.timestamp)
        if event is not None:
            query = query.where(AuditRecord.event_type == event)
        return list((await session.scalars(query)).all())
