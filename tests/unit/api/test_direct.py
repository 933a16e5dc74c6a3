# SPDX-License-Identifier: Apache-2.0
"""Routes answered without FastAPI's per-request machinery answer exactly as FastAPI would."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from bastion.api.direct import DirectRoute, direct_handler
from bastion.api.flat import flatten_included
from bastion.api.responses import UTF8JSONResponse


class Item(BaseModel):
    name: str
    size: int


class Calls:
    """The dependencies and endpoints that ran, in order (one app per ``Calls`` at a time)."""

    current: Calls | None = None

    def __init__(self) -> None:
        self.order: list[str] = []

    @classmethod
    def note(cls, name: str) -> None:
        assert cls.current is not None
        cls.current.order.append(name)


# Module-level, as FastAPI resolves the string annotations of endpoints by their module.
async def first(request: Request) -> str:
    Calls.note("first")
    if request.headers.get("x-refuse"):
        raise HTTPException(status_code=403, detail="refused", headers={"X-Why": "test"})
    return "one"


async def second(request: Request) -> int:
    Calls.note("second")
    return 2


async def quiet() -> None:
    Calls.note("quiet")


def build(route_class: type[APIRoute], calls: Calls, *, flat: bool = False) -> FastAPI:
    """The same routes on a plain FastAPI router and on a direct one, for comparison; ``flat``
    serves the router's routes as top-level routes, as Bastion's app does."""
    Calls.current = calls
    router = APIRouter(prefix="/api", route_class=route_class, dependencies=[Depends(quiet)])

    @router.get("/item", response_model=Item)
    async def item(
        a: Annotated[str, Depends(first)], b: Annotated[int, Depends(second)], request: Request
    ) -> Any:
        Calls.note("endpoint")
        size = request.headers.get("x-size", "3")
        return {"name": f"{a}{b}é", "size": size}  # validated (and coerced) by the response model

    @router.get("/twice", response_model=Item)
    async def twice(a: Annotated[str, Depends(first)], again: Annotated[str, Depends(first)]) -> Item:
        return Item(name=a + again, size=1)

    @router.get("/plain")
    async def plain(request: Request) -> dict[str, Any]:
        return {"path": request.url.path, "nested": [1, 2.5, None]}

    @router.post("/created", status_code=201, response_model=Item)
    async def created() -> Item:
        return Item(name="new", size=0)

    @router.delete("/gone", status_code=204)
    async def gone() -> None:
        return None

    @router.get("/response")
    async def response() -> UTF8JSONResponse:
        return UTF8JSONResponse({"own": True}, headers={"X-Own": "1"})

    @router.get("/query", response_model=Item)
    async def query(size: int) -> Item:
        return Item(name="q", size=size)

    app = FastAPI(default_response_class=UTF8JSONResponse)
    app.include_router(router)
    if flat:
        flatten_included(app)
    app.state.router, app.state.calls = router, calls
    return app


REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/api/item", {}),
    ("GET", "/api/item", {"x-size": "41"}),
    ("GET", "/api/item", {"x-refuse": "1"}),
    ("GET", "/api/twice", {}),
    ("GET", "/api/plain", {}),
    ("POST", "/api/created", {}),
    ("DELETE", "/api/gone", {}),
    ("GET", "/api/response", {}),
    ("GET", "/api/query?size=5", {}),
    ("GET", "/api/query?size=five", {}),
    ("GET", "/api/query", {}),
    ("POST", "/api/item", {}),
]


Answer = tuple[int, list[tuple[str, str]], bytes]


def answer(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> Answer:
    Calls.current = app.state.calls
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.request(method, path, headers=headers)
    return response.status_code, sorted(response.headers.items()), response.content


@pytest.mark.parametrize("flat", [False, True], ids=["included", "flat"])
@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS)
def test_every_answer_is_the_one_fastapi_gives(
    method: str, path: str, headers: dict[str, str], flat: bool
) -> None:
    fastapi_calls, direct_calls = Calls(), Calls()
    expected = answer(build(APIRoute, fastapi_calls), method, path, headers)
    assert answer(build(DirectRoute, direct_calls, flat=flat), method, path, headers) == expected
    # The same dependencies ran, in the same order, each once per request.
    assert direct_calls.order == fastapi_calls.order


@pytest.mark.parametrize("flat", [False, True], ids=["included", "flat"])
def test_a_response_that_breaks_its_model_fails_as_under_fastapi(flat: bool) -> None:
    expected = answer(build(APIRoute, Calls()), "GET", "/api/item", {"x-size": "large"})
    assert expected[0] >= 400
    assert answer(build(DirectRoute, Calls(), flat=flat), "GET", "/api/item", {"x-size": "large"}) == expected


def routes_of(app: FastAPI) -> dict[str, Any]:
    return {route.path: route for route in app.state.router.routes if isinstance(route, APIRoute)}


def test_only_routes_that_take_nothing_but_the_request_are_answered_directly() -> None:
    app = build(DirectRoute, Calls())
    direct = {path for path, route in routes_of(app).items() if direct_handler(route) is not None}
    # A query parameter needs FastAPI's validation; the rest take only the request (or nothing).
    assert direct == {"/api/item", "/api/twice", "/api/plain", "/api/created", "/api/gone", "/api/response"}
    assert not routes_of(app)["/api/item"].dependant.query_params  # the dependencies were resolved


def sync_dependency(request: Request) -> str:
    return "sync"


class Body(BaseModel):
    text: str


def test_sync_dependencies_and_bodies_are_left_to_fastapi() -> None:
    router = APIRouter(route_class=DirectRoute)

    @router.get("/sync")
    async def uses_sync(value: Annotated[str, Depends(sync_dependency)]) -> str:
        return value

    @router.post("/body")
    async def uses_body(body: Body) -> str:
        return body.text

    @router.get("/sync-endpoint")
    def sync_endpoint() -> str:
        return "thread"

    for route in router.routes:
        assert isinstance(route, APIRoute)
        assert direct_handler(route) is None, route.path
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/sync").json() == "sync"
        assert client.post("/body", json={"text": "t"}).json() == "t"
        assert client.get("/sync-endpoint").json() == "thread"


@pytest.mark.parametrize("flat", [False, True], ids=["included", "flat"])
def test_dependency_overrides_are_honoured(flat: bool) -> None:
    calls = Calls()
    app = build(DirectRoute, calls, flat=flat)

    async def overridden() -> str:
        return "over"

    app.dependency_overrides[first] = overridden
    Calls.current = calls
    with TestClient(app) as client:
        assert client.get("/api/item").json() == {"name": "over2é", "size": 3}
    assert "first" not in calls.order
