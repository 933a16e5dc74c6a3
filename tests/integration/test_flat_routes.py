# SPDX-License-Identifier: Apache-2.0
"""Included routers served as top-level routes describe and answer exactly what they did included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from bastion import app as app_module
from bastion.api.direct import DirectRoute
from bastion.api.flat import flatten_included
from bastion.app import create_app
from tests.conftest import SettingsFactory


def served_table(app: FastAPI) -> list[dict[str, Any]]:
    """What decides each route's answer, in the order routes are matched."""
    table = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            table.append({"path": getattr(context, "path", None), "kind": type(route).__name__})
            continue
        table.append(
            {
                "path": context.path,
                "methods": sorted(context.methods),
                "name": context.name,
                "unique_id": context.unique_id,
                "status_code": context.status_code,
                "response_model": context.response_model,
                "response_class": getattr(context.response_class, "value", context.response_class),
                "dependencies": [d.dependency for d in context.dependencies],
                "calls": [d.call for d in context.dependant.dependencies],
                "endpoint": context.endpoint,
                "include_in_schema": context.include_in_schema,
                "tags": list(context.tags),
                "body": context.body_field is not None,
                "overrides": context.dependency_overrides_provider,
            }
        )
    return table


def test_the_served_app_is_the_included_one_flattened(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "flatten_included", lambda app: None)
    app = create_app(make_settings(ENABLE_DOCS="true"))
    assert any(not isinstance(entry, APIRoute) for entry in app.router.routes[2:])
    included, description = served_table(app), json.dumps(app.openapi(), sort_keys=True)
    flatten_included(app)
    app.openapi_schema = None  # described again from the flattened table
    # Every entry after /health and /openapi.json:
    assert all(isinstance(entry, DirectRoute) for entry in app.router.routes[2:])
    # Same routes in the same order, with the same dependencies, models and classes...
    assert served_table(app) == included
    # ...and the same API description, byte for byte.
    assert json.dumps(app.openapi(), sort_keys=True) == description


def test_routers_with_other_kinds_of_routes_stay_included() -> None:
    async def token(request: Request) -> str:
        return request.headers.get("x-token", "none")

    plain = APIRouter(prefix="/plain", dependencies=[Depends(token)])

    @plain.get("/item")
    async def item(request: Request) -> dict[str, str]:
        return {"path": request.url.path}

    sockets = APIRouter(prefix="/ws")

    @sockets.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    @sockets.get("/info")
    async def info() -> dict[str, str]:
        return {"kind": "info"}

    nested = APIRouter(prefix="/outer")
    inner = APIRouter(prefix="/inner")

    @inner.get("/leaf")
    async def leaf() -> dict[str, str]:
        return {"kind": "leaf"}

    nested.include_router(inner)

    app = FastAPI()
    for router in (plain, sockets, nested):
        app.include_router(router)
    flatten_included(app)
    kinds = [type(entry).__name__ for entry in app.router.routes]
    assert "DirectRoute" in kinds and "_IncludedRouter" in kinds
    with TestClient(app) as client:
        assert client.get("/plain/item").json() == {"path": "/plain/item"}
        assert client.get("/ws/info").json() == {"kind": "info"}
        assert client.get("/outer/inner/leaf").json() == {"kind": "leaf"}
        with client.websocket_connect("/ws/echo") as websocket:
            websocket.send_text("hi")
            assert websocket.receive_text() == "hi"
