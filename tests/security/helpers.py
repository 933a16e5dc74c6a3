# SPDX-License-Identifier: Apache-2.0
"""What every attack test needs: the routes taken from the app's own route table, an administrator
(who holds every permission, so each route reaches its body parsing), and the error-shape check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from tests.conftest import SettingsFactory
from tests.integration.auth.helpers import bearer, identity_app, identity_settings, login, make_admin
from tests.integration.test_route_matrix import SESSION_ENDING, concrete

# Multipart, not JSON: its size cap is MAX_AUDIO_SIZE_MB, attacked in test_resource_consumption.
MULTIPART = {("POST", "/api/sessions/{session_id}/voice-chat")}
ADMIN_EMAIL = "attack-admin@example.com"


def api_routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    """Every API route as served (with its router's prefix), straight from the route table."""
    table: dict[tuple[str, str], APIRoute] = {}
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            for method in context.methods or ():
                table[(method, str(context.path))] = context.original_route
    return table


def body_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) that may take a JSON body."""
    return sorted(
        route for route in api_routes(app) if route[0] in ("POST", "PUT", "PATCH") and route not in MULTIPART
    )


@dataclass
class Attack:
    app: FastAPI
    http: httpx.AsyncClient
    admin: dict[str, str]

    async def send(self, method: str, path: str, content: bytes, content_type: str) -> httpx.Response:
        """One hostile body as the administrator; after a route that may end sessions (logging out
        everywhere ends them all), the administrator signs in again."""
        headers = {"Content-Type": content_type} if content_type else {}
        response = await self.http.request(
            method, concrete(path), content=content, headers={**self.admin, **headers}
        )
        self.http.cookies.clear()
        if (method, path) in SESSION_ENDING and response.status_code < 400:
            self.admin = bearer((await login(self.http, ADMIN_EMAIL))["access_token"])
        return response


@asynccontextmanager
async def attacked_app(make_settings: SettingsFactory, **overrides: object) -> AsyncIterator[Attack]:
    settings = identity_settings(make_settings, RATE_LIMIT_PER_MINUTE=100_000, **overrides)
    async with identity_app(settings) as (app, http):
        _, tokens = await make_admin(app, http, ADMIN_EMAIL)
        yield Attack(app, http, bearer(tokens["access_token"]))


def assert_error_shape(response: httpx.Response, label: object) -> None:
    """A 4xx with Bastion's error shape: never a 500, never a bare framework answer."""
    assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json; charset=utf-8", label
    detail = response.json()["detail"]
    assert isinstance(detail["error"], str) and isinstance(detail["message"], str), label
    assert detail["request_id"] == response.headers["x-request-id"], label
