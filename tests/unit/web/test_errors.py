# SPDX-License-Identifier: Apache-2.0
"""The last-resort error layer: a busy database is a 503 with Retry-After, anything else a 500."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from starlette.types import Receive, Scope, Send

from bastion.web.errors import UnhandledErrors


def failing(exc: Exception) -> UnhandledErrors:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return UnhandledErrors(app)


async def get(app: UnhandledErrors) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        return await http.get("/api/sessions")


async def test_a_locked_database_is_service_unavailable_with_retry_after() -> None:
    locked = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    response = await get(failing(locked))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    detail = response.json()["detail"]
    assert detail["error"] == "service_unavailable"
    assert detail["retry_after"] == int(response.headers["retry-after"])


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("SELECT ...", {}, sqlite3.OperationalError("no such table: notes")),
        RuntimeError("database is locked"),
    ],
)
async def test_other_failures_stay_internal_errors(exc: Exception) -> None:
    response = await get(failing(exc))
    assert response.status_code == 500
    assert response.json()["detail"]["error"] == "internal_error"
    assert "locked" not in response.text and "notes" not in response.text
