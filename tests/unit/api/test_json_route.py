# SPDX-License-Identifier: Apache-2.0
"""``JsonRoute``: the JSON check on the routes that can take a body, and only there."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from bastion.api.content_types import BODY_METHODS, JsonRoute, require_json
from bastion.errors import BastionError


def _calls(route: object) -> list[object]:
    return [dependency.call for dependency in route.dependant.dependencies]  # type: ignore[attr-defined]


async def _marker() -> None:
    return None


def _router() -> APIRouter:
    router = APIRouter(prefix="/things", route_class=JsonRoute, dependencies=[Depends(_marker)])

    @router.get("")
    async def read() -> dict[str, str]:
        return {"read": "ok"}

    @router.post("")
    async def write(body: dict[str, str]) -> dict[str, str]:
        return body

    @router.api_route("/any", methods=["GET", "PATCH"])
    async def either() -> dict[str, str]:
        return {"either": "ok"}

    return router


def _app() -> FastAPI:
    app = FastAPI()

    @app.exception_handler(BastionError)
    async def domain(_request: object, exc: BastionError) -> object:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": exc.code}, status_code=exc.status_code)

    app.include_router(_router())
    return app


def test_only_routes_that_can_take_a_body_carry_the_check_and_it_comes_first() -> None:
    routes = {(route.path, tuple(sorted(route.methods))): route for route in _router().routes}  # type: ignore[attr-defined]
    assert require_json not in _calls(routes[("/things", ("GET",))])
    assert _marker in _calls(routes[("/things", ("GET",))])
    assert _calls(routes[("/things", ("POST",))])[:2] == [require_json, _marker]
    assert _calls(routes[("/things/any", ("GET", "PATCH"))])[0] is require_json


@pytest.mark.parametrize("method", sorted(BODY_METHODS))
def test_every_body_method_is_checked(method: str) -> None:
    async def endpoint() -> None:
        return None

    route = JsonRoute("/x", endpoint, methods=[method.lower()])
    assert _calls(route)[0] is require_json


async def test_answers() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/things")).json() == {"read": "ok"}
        # A GET reads no body: whatever it carries cannot reach a route, so it is not refused.
        sent = await client.request("GET", "/things", content=b"a=1", headers={"content-type": "text/plain"})
        assert sent.status_code == 200
        refused = await client.post("/things", content=b"a=1", headers={"content-type": "text/plain"})
        assert refused.status_code == 415 and refused.json() == {"error": "unsupported_media_type"}
        assert (await client.post("/things", json={"a": "b"})).json() == {"a": "b"}
        patched = await client.patch(
            "/things/any", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert patched.status_code == 415
