# SPDX-License-Identifier: Apache-2.0
"""Helpers for API-key tests: a movable datetime clock and key creation through the API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from bastion.db.types import utcnow
from tests.integration.auth.helpers import bearer


class DateClock:
    """A datetime clock tests move by hand (expiry and grace periods without waiting)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def use_clock(app: FastAPI, clock: DateClock) -> None:
    app.state.api_keys.clock = clock


async def create_key(http: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": "test key", "scopes": ["chat"], **body}
    response = await http.post("/api/keys", json=payload, headers=bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}
