# SPDX-License-Identifier: Apache-2.0
"""RouteIndex answers exactly what FastAPI's whole route table answers, only sooner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request, WebSocket
from starlette.responses import JSONResponse
from starlette.routing import Host, Mount
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from bastion.api.route_index import RouteIndex, path_key, route_key

# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/", ("",)),
        ("", ()),
        ("/health", ("health",)),
        ("/health/", ("health", "")),
        ("/api/items", ("api", "items")),
        ("/api/items/", ("api", "items")),
        ("/api/items/5", ("api", "items")),
        ("/api/items/5/parts/7", ("api", "items")),
        ("//x", ("", "x")),
        ("/a//b", ("a", "")),
    ],
)
def test_path_key_is_the_first_two_segments(path: str, key: tuple[str, ...]) -> None:
    assert path_key(path) == key


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ("/", ("",)),
        ("/health", ("health",)),
        ("/health/", ("health", "")),
        ("/api/items", ("api", "items")),
        ("/api/items/", ("api", "items")),
        ("/api/items/{id}", ("api", "items")),
        ("/api/items/{id}/parts/{part}", ("api", "items")),
        ("/api/items/x{id}", ("api", "items")),
        ("/api/items/{rest:path}", ("api", "items")),
        # a parameter in the first two segments: any key may match
        ("/{tenant}", None),
        ("/{tenant}/x", None),
        ("/api/{v}/y", None),
        ("/api/{v}", None),
        ("/api/items{id}", None),
        ("/api{x}/y", None),
        ("/{rest:path}", None),
        ("/files/{rest:path}", None),
    ],
)
def test_route_key_is_fixed_only_when_the_first_two_segments_are_literal(
    template: str, key: tuple[str, ...] | None
) -> None:
    assert route_key(template) == key


@pytest.mark.parametrize(
    ("template", "paths"),
    [
        ("/api/items/{id}", ["/api/items/5", "/api/items/abc"]),
        ("/api/items/x{id}", ["/api/items/x5"]),
        ("/api/items/{rest:path}", ["/api/items/a/b/c"]),
        ("/health", ["/health"]),
        ("/api/items/", ["/api/items/"]),
    ],
)
def test_a_fixed_route_key_is_the_key_of_every_path_it_matches(template: str, paths: list[str]) -> None:
    for path in paths:
        assert path_key(path) == route_key(template)


# -- apps ---------------------------------------------------------------------------------------


@dataclass
class Built:
    app: FastAPI
    routers: dict[str, APIRouter]
    events: list[str] = field(default_factory=list)


def _answer(name: str) -> Callable[..., Any]:
    async def endpoint(request: Request) -> dict[str, Any]:
        route = request.scope.get("route")
        return {
            "name": name,
            "route": getattr(route, "path", None),
            "params": dict(request.path_params),
            "root_path": request.scope.get("root_path", ""),
        }

    endpoint.__name__ = name
    return endpoint


async def _mounted(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"name": "mounted", "path": scope["path"], "root_path": scope.get("root_path")})
    await response(scope, receive, send)


def build(indexed: bool) -> Built:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    # a host route first: for its host it answers every path
    app.router.routes.append(Host("admin.example.org", app=_mounted, name="admin_host"))
    app.add_api_route("/health", _answer("health"), methods=["GET"])
    app.add_api_route("/", _answer("root"), methods=["GET"])
    # same path, different methods, as separate routes
    app.add_api_route("/things/list", _answer("things_get"), methods=["GET"])
    app.add_api_route("/things/list", _answer("things_post"), methods=["POST"])
    # two routes for the same path and method: the first wins
    app.add_api_route("/dup/one", _answer("dup_first"), methods=["GET"])
    app.add_api_route("/dup/one", _answer("dup_second"), methods=["GET"])
    app.add_api_route("/slashy/", _answer("slashy"), methods=["GET"])

    tenants = APIRouter()
    tenants.add_api_route("/{tenant}/x", _answer("tenant_x"), methods=["GET"])
    app.include_router(tenants)
    # shadowed by /{tenant}/x, which comes first in the table
    app.add_api_route("/shadow/x", _answer("shadow_x"), methods=["GET"])
    app.add_api_route("/shadow/y", _answer("shadow_y"), methods=["GET", "DELETE"])

    items = APIRouter(prefix="/items")
    items.add_api_route("", _answer("items_list"), methods=["GET"])
    items.add_api_route("/{id}", _answer("item"), methods=["GET"], name="item")
    items.add_api_route("/{id}", _answer("item_put"), methods=["PUT"])
    items.add_api_route("/special", _answer("items_special"), methods=["GET", "POST"])  # {id} wins GET

    parts = APIRouter(prefix="/{id}/parts")
    parts.add_api_route("/{part}", _answer("part"), methods=["GET"], name="part")
    items.include_router(parts)

    versioned = APIRouter()
    versioned.add_api_route("/{v}/y", _answer("versioned_y"), methods=["GET"])

    members = APIRouter(prefix="/orgs/{org}")
    members.add_api_route("/members", _answer("members"), methods=["GET"])
    members.add_api_route("/members/{member}", _answer("member"), methods=["GET", "DELETE"])

    links = APIRouter(prefix="/links")

    async def link(request: Request) -> dict[str, str]:
        return {
            "item": str(request.url_for("item", id="5")),
            "part": str(request.url_for("part", id="5", part="9")),
            "health": str(request.url_for("health")),
            "mounted": str(request.url_for("static", path="/a.css")),
        }

    links.add_api_route("/to-item", link, methods=["GET"])

    api = APIRouter(prefix="/api")
    api.include_router(items)
    api.include_router(versioned)
    app.include_router(api)
    app.include_router(links)
    app.include_router(members)
    app.add_api_route("/orgs/acme/members", _answer("acme_members"), methods=["GET", "POST"])  # GET shadowed

    @app.websocket("/ws/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("echo " + await websocket.receive_text())
        await websocket.close()

    app.router.routes.append(Mount("/static", app=_mounted, name="static"))
    app.add_api_route("/static/override", _answer("after_mount"), methods=["GET"])  # the mount wins

    if indexed:
        app.router.middleware_stack = RouteIndex(app.router)
    return Built(app, {"items": items, "api": api, "links": links, "tenants": tenants}, events)


def client(app: FastAPI, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, **kwargs), base_url="http://testserver")


def _seen(response: httpx.Response) -> tuple[Any, ...]:
    return (
        response.status_code,
        response.content,
        response.headers.get("allow"),
        response.headers.get("location"),
        response.headers.get("content-type"),
    )


async def compare(
    indexed: FastAPI,
    whole: FastAPI,
    requests: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> list[tuple[Any, ...]]:
    """Every request's answer from both apps; they must be the same. The indexed app's answers."""
    answers = []
    async with client(indexed, **kwargs) as fast, client(whole, **kwargs) as slow:
        for method, path in requests:
            got = _seen(await fast.request(method, path, headers=headers))
            want = _seen(await slow.request(method, path, headers=headers))
            assert got == want, (method, path)
            answers.append(got)
    return answers


PATHS = [
    "/",
    "/health",
    "/health/",
    "/healthz",
    "/things/list",
    "/things/list/",
    "/things/other",
    "/dup/one",
    "/slashy/",
    "/slashy",
    "/acme/x",
    "/acme/x/",
    "/shadow/x",
    "/shadow/y",
    "/shadow/y/",
    "/shadow/z",
    "/api/items",
    "/api/items/",
    "/api/items/5",
    "/api/items/5/",
    "/api/items/special",
    "/api/items/5/parts/9",
    "/api/items/5/parts/9/",
    "/api/items/5/parts",
    "/api/v1/y",
    "/api/v1/y/",
    "/api/v1/z",
    "/api",
    "/api/",
    "/links/to-item",
    "/static/a.css",
    "/static/",
    "/static",
    "/static/override",
    "/orgs/acme/members",
    "/orgs/acme/members/",
    "/orgs/other/members/7",
    "/orgs/other",
    "/nowhere",
    "/nowhere/at/all",
    "//x",
    "/a//b",
    "/%7Btenant%7D/x",
    "/ws/echo",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]


async def test_every_path_and_method_is_answered_as_by_the_whole_table() -> None:
    indexed, whole = build(True).app, build(False).app
    await compare(indexed, whole, [(m, p) for p in PATHS for m in METHODS])


async def test_the_index_gives_the_expected_answers() -> None:
    indexed, whole = build(True).app, build(False).app
    requests = [
        ("GET", "/health"),
        ("GET", "/dup/one"),
        ("GET", "/shadow/x"),
        ("GET", "/api/items/special"),
        ("POST", "/api/items/special"),
        ("PUT", "/api/items/5"),
        ("GET", "/api/items/5/parts/9"),
        ("GET", "/api/v1/y"),
        ("GET", "/static/a.css"),
        ("GET", "/static/override"),
        ("POST", "/things/list"),
    ]
    answers = await compare(indexed, whole, requests)
    names = [httpx.Response(200, content=a[1]).json()["name"] for a in answers]
    assert names == [
        "health",
        "dup_first",
        "tenant_x",
        "item",
        "items_special",
        "item_put",
        "part",
        "versioned_y",
        "mounted",
        "mounted",
        "things_post",
    ]


async def test_a_host_route_answers_every_path_for_its_host() -> None:
    indexed, whole = build(True).app, build(False).app
    answers = await compare(
        indexed, whole, [("GET", p) for p in PATHS], headers={"Host": "admin.example.org"}
    )
    assert {httpx.Response(200, content=a[1]).json()["name"] for a in answers} == {"mounted"}


async def test_a_router_prefix_with_a_parameter_comes_first_where_it_is_first() -> None:
    indexed, whole = build(True).app, build(False).app
    answers = await compare(
        indexed,
        whole,
        [("GET", "/orgs/acme/members"), ("POST", "/orgs/acme/members"), ("DELETE", "/orgs/acme/members/7")],
    )
    names = [httpx.Response(200, content=a[1]).json()["name"] for a in answers]
    assert names == ["members", "acme_members", "member"]


async def test_method_not_allowed_has_the_whole_tables_allow_header() -> None:
    indexed, whole = build(True).app, build(False).app
    answers = await compare(
        indexed,
        whole,
        [("PATCH", "/things/list"), ("POST", "/shadow/y"), ("DELETE", "/api/items/5"), ("POST", "/health")],
    )
    assert [a[0] for a in answers] == [405, 405, 405, 405]
    assert answers[0][2] == "GET"  # the first partial match's methods, as without the index
    assert set(answers[1][2].split(", ")) == {"GET", "DELETE"}
    assert answers[3][2] == "GET"


async def test_not_found_and_slash_redirects_both_ways() -> None:
    indexed, whole = build(True).app, build(False).app
    answers = await compare(
        indexed,
        whole,
        [
            ("GET", "/nowhere"),
            ("GET", "/health/"),
            ("GET", "/slashy"),
            ("GET", "/api/items/5/"),
            ("GET", "/x/y/z"),
        ],
    )
    assert [a[0] for a in answers] == [404, 307, 307, 307, 404]
    assert answers[1][3] == "http://testserver/health"
    assert answers[2][3] == "http://testserver/slashy/"
    assert answers[3][3] == "http://testserver/api/items/5"


async def test_the_root_path_is_stripped_before_the_key_is_taken() -> None:
    indexed, whole = build(True).app, build(False).app
    requests = [(m, "/pre" + p) for p in PATHS for m in ("GET", "POST")]
    requests += [("GET", p) for p in PATHS]
    requests += [("GET", "/pre"), ("GET", "/prefix/health"), ("GET", "/pre/"), ("GET", "/pre/links/to-item")]
    answers = dict(zip(requests, await compare(indexed, whole, requests, root_path="/pre"), strict=True))
    health = answers[("GET", "/pre/health")]
    assert health[0] == 200
    assert httpx.Response(200, content=health[1]).json()["root_path"] == "/pre"
    links = answers[("GET", "/pre/links/to-item")]
    assert httpx.Response(200, content=links[1]).json()["item"] == "http://testserver/pre/api/items/5"


async def test_url_for_from_an_endpoint_finds_routes_of_other_routers() -> None:
    indexed, whole = build(True).app, build(False).app
    (answer,) = await compare(indexed, whole, [("GET", "/links/to-item")])
    assert answer[0] == 200
    assert httpx.Response(200, content=answer[1]).json() == {
        "item": "http://testserver/api/items/5",
        "part": "http://testserver/api/items/5/parts/9",
        "health": "http://testserver/health",
        "mounted": "http://testserver/static/a.css",
    }


async def test_a_route_added_to_the_app_after_the_first_request_is_found() -> None:
    indexed, whole = build(True).app, build(False).app
    await compare(indexed, whole, [("GET", "/late/route"), ("GET", "/health")])
    for app in (indexed, whole):
        app.add_api_route("/late/route", _answer("late"), methods=["GET"])
    (answer,) = await compare(indexed, whole, [("GET", "/late/route")])
    assert answer[0] == 200
    # a new key next to an old one, and a route that goes first in the table
    for app in (indexed, whole):
        app.add_api_route("/health/deep", _answer("deep"), methods=["GET"])
        app.router.routes.insert(0, app.router.routes.pop())
    answers = await compare(
        indexed, whole, [("GET", "/health/deep"), ("GET", "/health"), ("GET", "/late/route")]
    )
    assert [a[0] for a in answers] == [200, 200, 200]


async def test_a_route_inserted_first_after_the_first_request_wins() -> None:
    indexed, whole = build(True).app, build(False).app
    await compare(indexed, whole, [("GET", "/api/items/5")])
    for app in (indexed, whole):
        app.add_api_route("/api/items/{other}", _answer("inserted"), methods=["GET"])
        app.router.routes.insert(0, app.router.routes.pop())
    (answer,) = await compare(indexed, whole, [("GET", "/api/items/5")])
    assert httpx.Response(200, content=answer[1]).json()["name"] == "inserted"


async def test_a_router_included_after_the_first_request_is_found() -> None:
    indexed, whole = build(True).app, build(False).app
    await compare(indexed, whole, [("GET", "/more/stuff")])
    for app in (indexed, whole):
        more = APIRouter(prefix="/more")
        more.add_api_route("/stuff", _answer("more"), methods=["GET"])
        app.include_router(more)
    (answer,) = await compare(indexed, whole, [("GET", "/more/stuff")])
    assert answer[0] == 200


async def test_a_route_added_to_an_included_router_after_the_first_request_is_found() -> None:
    built = [build(True), build(False)]
    await compare(built[0].app, built[1].app, [("GET", "/links/new"), ("GET", "/links/to-item")])
    for b in built:
        b.routers["links"].add_api_route("/new", _answer("links_new"), methods=["GET"])
    (answer,) = await compare(built[0].app, built[1].app, [("GET", "/links/new")])
    assert answer[0] == 200


async def test_a_route_added_to_an_included_router_later_still_comes_first_when_it_is_earlier() -> None:
    # /links/{anything} is added to a router included before the app's own /links/z: the whole
    # table answers /links/z with the router's new route, since that router comes first.
    built = [build(True), build(False)]
    for b in built:
        b.app.add_api_route("/links/z", _answer("links_z"), methods=["GET"])
    await compare(built[0].app, built[1].app, [("GET", "/links/z")])
    for b in built:
        b.routers["links"].add_api_route("/{anything}", _answer("links_any"), methods=["GET"])
    (answer,) = await compare(built[0].app, built[1].app, [("GET", "/links/z")])
    assert httpx.Response(200, content=answer[1]).json()["name"] == "links_any"


async def test_low_priority_routes_of_an_included_router_do_not_preempt_slash_redirects(
    tmp_path: Path,
) -> None:
    (tmp_path / "index.html").write_text("<p>front</p>")

    def with_frontend(indexed: bool) -> FastAPI:
        app = FastAPI()
        app.add_api_route("/app/page", _answer("page"), methods=["GET"])
        front = APIRouter()
        front.frontend("/", directory=tmp_path)
        app.include_router(front, prefix="/app")
        if indexed:
            app.router.middleware_stack = RouteIndex(app.router)
        return app

    answers = await compare(
        with_frontend(True),
        with_frontend(False),
        [("GET", "/app/page"), ("GET", "/app/page/"), ("GET", "/app/other"), ("GET", "/app/")],
    )
    assert answers[1][0] == 307


async def test_app_level_low_priority_routes_leave_matching_to_the_whole_table(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<p>front</p>")

    def with_frontend(indexed: bool) -> FastAPI:
        app = build(indexed).app
        app.frontend("/", directory=tmp_path)
        return app

    await compare(with_frontend(True), with_frontend(False), [("GET", p) for p in PATHS])


async def test_the_lifespan_still_runs() -> None:
    built = build(True)
    async with LifespanManager(built.app) as manager:
        assert built.events == ["startup"]
        async with client(manager.app) as http:  # type: ignore[arg-type]
            assert (await http.get("/health")).status_code == 200
    assert built.events == ["startup", "shutdown"]


def test_websockets_are_routed_by_the_whole_table() -> None:
    built = build(True)
    with TestClient(built.app) as http:
        with http.websocket_connect("/ws/echo") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "echo hi"
        assert http.get("/api/items/5").json()["name"] == "item"


async def test_an_empty_table_goes_to_the_whole_router() -> None:
    app = FastAPI()
    app.router.routes.clear()
    app.router.middleware_stack = RouteIndex(app.router)
    async with client(app) as http:
        assert (await http.get("/anything")).status_code == 404


async def test_the_index_is_built_once_per_table() -> None:
    app = build(True).app
    index = app.router.middleware_stack
    assert isinstance(index, RouteIndex)
    async with client(app) as http:
        await http.get("/health")
        views = index._views
        await http.get("/api/items/5")
        assert index._views is views
        app.add_api_route("/new/one", _answer("new"), methods=["GET"])
        await http.get("/health")
        assert index._views is not views
        assert ("new", "one") in index._views
