# SPDX-License-Identifier: Apache-2.0
"""Routes answered without FastAPI's per-request machinery answer exactly as FastAPI would."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import pytest
from fastapi import (
    APIRouter,
    BackgroundTasks,
    Body,
    Cookie,
    Depends,
    FastAPI,
    Form,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_serializer

from bastion.api.direct import DirectRoute, _json_bytes, _json_equivalent, direct_handler
from bastion.api.flat import flatten_included
from bastion.api.responses import UTF8JSONResponse


class Item(BaseModel):
    name: str
    size: int


class Order(BaseModel):
    """A body with nesting and constraints, as Bastion's request models have."""

    item: Item
    count: int = Field(ge=1, le=9)
    note: str | None = None


Code = Annotated[str, Path(min_length=1, max_length=8, pattern=r"^[a-z]+$")]

#: Every character JSON escapes or may write raw, beyond Latin-1, the line separators, astral ones.
ALL_TEXT = "".join(chr(c) for c in range(0x250)) + "\u2028\u2029\ufeff\ud7ff\ue000😀\U0010ffff"


class Mixed(BaseModel):
    """What pydantic and ``json.dumps`` write alike: strings, big integers, datetimes, literals."""

    texts: list[str]
    numbers: dict[str, int]
    at: datetime
    day: date | None
    kind: Literal["a", 1, True] | None
    flag: bool


class Measured(BaseModel):
    """What they write differently (floats), and what could hold anything."""

    ratio: float
    extra: Any


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

    @router.get("/search/{code}")
    async def search(
        code: Code,
        a: Annotated[str, Depends(first)],
        before: Annotated[datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        tag: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        kind: Annotated[str | None, Query(alias="type", max_length=8)] = None,
    ) -> dict[str, Any]:
        return {"code": code, "a": a, "before": before, "limit": limit, "tag": tag, "kind": kind}

    @router.post("/filed/{number}", response_model=Item)
    async def filed(number: int, body: Order, dry: bool = False) -> Item:
        return Item(name=f"{dry}", size=number + body.count)

    @router.post("/orders/{code}/{number}", response_model=Item)
    async def order(
        code: Code,
        number: int,
        body: Order,
        a: Annotated[str, Depends(first)],
        request: Request,
        response: Response,
    ) -> Any:
        Calls.note("endpoint")
        response.headers["X-Order"] = f"{code}{number}"
        response.set_cookie("seen", "1")
        response.set_cookie("code", code, httponly=True)
        if status := request.headers.get("x-status"):
            response.status_code = int(status)
        if request.headers.get("x-own"):
            return JSONResponse({"own": code}, headers={"X-Own": "1"})
        # Validated (and coerced: the count becomes the size) by the response model.
        return {"name": f"{a}{body.item.name}", "size": str(body.count + number)}

    @router.put("/orders/{code}", status_code=201, response_model=Order, response_model_exclude_none=True)
    async def replace(code: Code, body: Order, response: Response) -> Order:
        response.headers["X-Code"] = code
        return body

    @router.post("/embedded/{number}")
    async def embedded(number: int, order: Annotated[Order, Body(embed=True)]) -> dict[str, Any]:
        return {"number": number, "count": order.count}

    @router.post("/small/{number}", max_body_size=64)
    async def small(number: int, body: Order) -> int:
        return body.count

    @router.get("/mixed", response_model=Mixed)
    async def mixed() -> Mixed:
        return Mixed(
            texts=[ALL_TEXT, "", '\\"/'],
            numbers={ALL_TEXT: 2**64, "small": -(10**30), "zero": 0},
            at=datetime(2026, 12, 6, 7, 8, 9, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            day=date(999, 1, 2),
            kind=True,
            flag=False,
        )

    @router.get("/measured", response_model=Measured)
    async def measured() -> Measured:
        return Measured(ratio=1e16, extra=[0.1, 1e-07, 100000000000000000.0, {"x": 2.5}])

    @router.get("/bad/{number}", response_model=Item)
    async def bad(number: int) -> Any:
        return {"name": "bad", "size": "large" if number else 0}

    lax = APIRouter(prefix="/api/lax", route_class=route_class, strict_content_type=False)

    @lax.post("/orders/{number}", response_model=Order)
    async def lax_order(number: int, body: Order) -> Order:
        return body

    app = FastAPI(default_response_class=UTF8JSONResponse)
    # Every detail of a validation error, its body and the endpoint it names, in the answer.
    app.add_exception_handler(RequestValidationError, request_error)
    app.add_exception_handler(ResponseValidationError, response_error)
    app.include_router(router)
    app.include_router(lax)
    if flat:
        flatten_included(app)
    app.state.router, app.state.calls = router, calls
    return app


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{**error, "ctx": repr(error.get("ctx"))} for error in exc.errors()]
    return JSONResponse(
        {"errors": repr(errors), "body": repr(exc.body), "text": str(exc), "cause": repr(exc.__cause__)},
        status_code=422,
    )


async def response_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ResponseValidationError)
    return JSONResponse({"text": str(exc), "body": repr(exc.body)}, status_code=500)


REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/api/item", {}),
    ("GET", "/api/item", {"x-size": "41"}),
    ("GET", "/api/item", {"x-refuse": "1"}),
    ("GET", "/api/twice", {}),
    ("GET", "/api/plain", {}),
    ("GET", "/api/mixed", {}),
    ("GET", "/api/measured", {}),
    ("POST", "/api/created", {}),
    ("DELETE", "/api/gone", {}),
    ("GET", "/api/response", {}),
    ("GET", "/api/query?size=5", {}),
    ("GET", "/api/query?size=five", {}),
    ("GET", "/api/query", {}),
    ("GET", "/api/query?size=5&size=6", {}),
    ("GET", "/api/query?size=", {}),
    ("GET", "/api/search/abc", {}),
    ("GET", "/api/search/abc?limit=3&tag=x&tag=y&type=def", {}),
    ("GET", "/api/search/abc?before=2026-12-06T10:00:00Z&limit=100", {}),
    ("GET", "/api/search/abc?before=yesterday&limit=0&type=toolongforacode", {}),
    ("GET", "/api/search/ABC?limit=101", {}),
    ("GET", "/api/search/abc?limit=3", {"x-refuse": "1"}),
    ("GET", "/api/search/abc?limit=%FF&unknown=1&kind=ignored", {}),
    ("POST", "/api/item", {}),
]


JSON = {"content-type": "application/json"}
ORDER = b'{"item": {"name": "pen", "size": 1}, "count": 2}'

#: Requests with a body: valid, missing, empty, malformed, of other or no types, failing fields,
#: nested deeper than the model, with failing path parameters too, refused by a dependency.
BODY_REQUESTS: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("POST", "/api/orders/abc/7", JSON, ORDER),
    ("POST", "/api/orders/abc/7", {**JSON, "x-status": "202"}, ORDER),
    ("POST", "/api/orders/abc/7", {**JSON, "x-status": "204"}, ORDER),
    ("POST", "/api/orders/abc/7", {**JSON, "x-own": "1"}, ORDER),
    ("POST", "/api/orders/abc/7", {**JSON, "x-own": "1", "x-status": "202"}, ORDER),
    ("POST", "/api/orders/abc/7", JSON, None),
    ("POST", "/api/orders/abc/7", JSON, b""),
    ("POST", "/api/orders/abc/7", JSON, b'{"item": {"name": "pen", "size": 1}, "count": '),
    ("POST", "/api/orders/abc/7", JSON, b"\xff\xfe{}"),
    ("POST", "/api/orders/abc/7", {"content-type": "text/plain"}, ORDER),
    ("POST", "/api/orders/abc/7", {}, ORDER),
    ("POST", "/api/orders/abc/7", {"content-type": "application/merge-patch+json"}, ORDER),
    ("POST", "/api/orders/abc/7", {"content-type": "application/json; charset=utf-8"}, ORDER),
    ("POST", "/api/orders/abc/7", {"content-type": "Application/JSON"}, ORDER),
    ("POST", "/api/orders/abc/7", JSON, b'{"item": {"name": 5}, "count": 0}'),
    ("POST", "/api/orders/abc/7", JSON, b'{"order": {"item": {"name": "pen", "size": 1}, "count": 2}}'),
    ("POST", "/api/orders/abc/7", JSON, b"[1, 2]"),
    ("POST", "/api/orders/abc/7", JSON, b"null"),
    ("POST", "/api/orders/abc/7", JSON, b'{"item": {"name": "pen", "size": 1}, "count": 2, "note": 3}'),
    ("POST", "/api/orders/ABC/seven", JSON, ORDER),
    ("POST", "/api/orders/abcdefghij/7", JSON, b'{"count": 12}'),
    ("POST", "/api/orders/abc/7", {**JSON, "x-refuse": "1"}, ORDER),
    ("POST", "/api/orders/abc/7", {**JSON, "x-refuse": "1"}, b'{"count": 12}'),
    ("POST", "/api/orders/abc/seven", {**JSON, "x-refuse": "1"}, ORDER),
    ("POST", "/api/orders/abc/7", {**JSON, "x-refuse": "1"}, b"{"),
    ("PUT", "/api/orders/abc", JSON, ORDER),
    ("PUT", "/api/orders/abc", JSON, b'{"item": {"name": "pen", "size": "3"}, "count": "4", "note": "n"}'),
    ("PUT", "/api/orders/abc", JSON, b"{}"),
    ("POST", "/api/embedded/3", JSON, b'{"order": {"item": {"name": "pen", "size": 1}, "count": 2}}'),
    ("POST", "/api/embedded/3", JSON, ORDER),
    ("POST", "/api/embedded/3", JSON, b"[]"),
    ("POST", "/api/embedded/x", JSON, None),
    ("POST", "/api/small/1", JSON, ORDER),
    ("POST", "/api/small/1", JSON, b'{"item": {"name": "%s", "size": 1}, "count": 2}' % (b"p" * 64)),
    ("GET", "/api/bad/1", {}, None),
    ("GET", "/api/bad/0", {}, None),
    ("POST", "/api/lax/orders/1", {}, ORDER),
    ("POST", "/api/lax/orders/1", {}, b"{"),
    ("POST", "/api/lax/orders/1", {"content-type": "text/plain"}, ORDER),
    ("POST", "/api/lax/orders/1", {}, None),
    ("POST", "/api/filed/2?dry=true", JSON, ORDER),
    ("POST", "/api/filed/2?dry=perhaps", JSON, ORDER),
    ("POST", "/api/filed/x?dry=perhaps", JSON, b'{"count": "many"}'),
    ("POST", "/api/filed/2?dry=1", {**JSON, "x-refuse": "1"}, ORDER),
]


Answer = tuple[int, list[tuple[str, str]], bytes]


def answer(
    app: FastAPI, method: str, path: str, headers: dict[str, str], content: bytes | None = None
) -> Answer:
    """Status, headers in the order sent (repeated ones kept), body."""
    Calls.current = app.state.calls
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.request(method, path, headers=headers, content=content)
    return response.status_code, response.headers.multi_items(), response.content


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
@pytest.mark.parametrize(("method", "path", "headers", "content"), BODY_REQUESTS)
def test_every_answer_with_path_parameters_and_a_body_is_the_one_fastapi_gives(
    method: str, path: str, headers: dict[str, str], content: bytes | None, flat: bool
) -> None:
    fastapi_calls, direct_calls = Calls(), Calls()
    expected = answer(build(APIRoute, fastapi_calls), method, path, headers, content)
    got = answer(build(DirectRoute, direct_calls, flat=flat), method, path, headers, content)
    assert got == expected
    # A malformed body fails before any dependency runs; a refusing dependency before validation.
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
    # Every route takes only the request (or nothing), path and query parameters, a JSON model
    # body and the response.
    assert direct == {
        "/api/item",
        "/api/twice",
        "/api/plain",
        "/api/mixed",
        "/api/measured",
        "/api/created",
        "/api/gone",
        "/api/response",
        "/api/orders/{code}/{number}",
        "/api/orders/{code}",
        "/api/embedded/{number}",
        "/api/small/{number}",
        "/api/bad/{number}",
        "/api/query",
        "/api/search/{code}",
        "/api/filed/{number}",
    }
    assert not routes_of(app)["/api/item"].dependant.query_params  # the dependencies were resolved


def sync_dependency(request: Request) -> str:
    return "sync"


class Text(BaseModel):
    text: str


async def path_dependency(number: int) -> int:
    return number


async def query_dependency(q: str) -> str:
    return q


def test_other_inputs_and_sync_functions_are_left_to_fastapi() -> None:
    router = APIRouter(route_class=DirectRoute)

    @router.get("/sync")
    async def uses_sync(value: Annotated[str, Depends(sync_dependency)]) -> str:
        return value

    @router.get("/sync-endpoint")
    def sync_endpoint() -> str:
        return "thread"

    @router.post("/sync-body/{number}")
    def sync_body(number: int, body: Text) -> str:
        return body.text

    @router.post("/header/{number}")
    async def header(number: int, body: Text, x_q: Annotated[str, Header()]) -> str:
        return x_q

    @router.get("/cookie")
    async def cookie(q: Annotated[str, Cookie()]) -> str:
        return q

    @router.get("/dependency-query")
    async def dependency_query(value: Annotated[str, Depends(query_dependency)]) -> str:
        return value

    @router.post("/form")
    async def form(text: Annotated[str, Form()]) -> str:
        return text

    @router.post("/two-bodies")
    async def two_bodies(first: Text, second: Text) -> str:
        return first.text + second.text

    @router.post("/scalar-body")
    async def scalar_body(text: Annotated[str, Body()]) -> str:
        return text

    @router.post("/background/{number}")
    async def background(number: int, body: Text, tasks: BackgroundTasks) -> str:
        return body.text

    @router.get("/dependency-path/{number}")
    async def dependency_path(number: Annotated[int, Depends(path_dependency)]) -> int:
        return number

    for route in router.routes:
        assert isinstance(route, APIRoute)
        assert direct_handler(route) is None, route.path
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/sync").json() == "sync"
        assert client.get("/sync-endpoint").json() == "thread"
        assert client.post("/sync-body/1", json={"text": "t"}).json() == "t"
        assert client.post("/header/1", json={"text": "t"}, headers={"x-q": "x"}).json() == "x"
        assert client.get("/cookie", headers={"cookie": "q=c"}).json() == "c"
        assert client.get("/dependency-query?q=d").json() == "d"
        assert client.post("/form", data={"text": "f"}).json() == "f"
        assert client.post("/background/1", json={"text": "b"}).json() == "b"
        assert client.get("/dependency-path/4").json() == 4


def test_path_parameters_a_model_body_and_the_response_are_answered_directly() -> None:
    router = APIRouter(route_class=DirectRoute)

    @router.post("/{number}")
    async def with_body(number: int, body: Text, request: Request, response: Response) -> str:
        return body.text

    @router.patch("/{code}/{number}")
    async def path_only(code: Code, number: int) -> int:
        return number

    assert all(isinstance(route, APIRoute) and direct_handler(route) is not None for route in router.routes)


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


class Node(BaseModel):
    """A recursive model: its schema refers to its own definition."""

    name: str
    children: list[Node] = []


class Shown(BaseModel):
    name: str

    @field_serializer("name")
    def shown(self, name: str) -> str:
        return name.upper()


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class Seconds(BaseModel):
    model_config = ConfigDict(ser_json_temporal="seconds")
    at: datetime


@pytest.mark.parametrize(
    ("model", "equivalent"),
    [
        (Item, True),
        (Order, True),
        (Mixed, True),
        (Node, True),
        (list[Item], True),
        (Measured, False),  # a float, and a value of any type
        (float, False),
        (dict[str, Any], False),
        (Shown, False),  # a serializer of its own
        (Open, False),  # extra fields, of any type
        (Seconds, False),  # datetimes written as numbers
    ],
)
def test_only_models_pydantic_writes_as_json_dumps_does_are_serialized_by_pydantic(
    model: Any, equivalent: bool
) -> None:
    assert _json_equivalent(TypeAdapter(model).core_schema) is equivalent


def test_such_an_answer_is_written_by_pydantic_not_json_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bytes as FastAPI's, and ``JSONResponse``'s encoder never ran for them."""
    expected = answer(build(APIRoute, Calls()), "GET", "/api/mixed", {})
    app = build(DirectRoute, Calls())

    def refuse(self: JSONResponse, content: Any) -> bytes:
        raise AssertionError("encoded by json.dumps")

    monkeypatch.setattr(JSONResponse, "render", refuse)
    assert answer(app, "GET", "/api/mixed", {}) == expected
    assert answer(app, "GET", "/api/measured", {})[0] == 500  # a float: json.dumps's, as FastAPI's


def test_the_routes_answered_most_often_are_serialized_by_pydantic() -> None:
    """The fast path holds on Bastion's own app (and FastAPI still keeps the adapter it reads)."""
    from bastion.app import create_app
    from bastion.settings import Settings

    app = create_app(Settings(_env_file=None, environment="development"))  # type: ignore[call-arg]
    routes = {
        (route.path, method): route
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    assert _json_bytes(routes[("/api/auth/me", "GET")], UTF8JSONResponse)
    # A signed reply is built as its own class, which signs the body as it sends it.
    chat = routes[("/api/sessions/{session_id}/messages", "POST")]
    assert not _json_bytes(chat, chat.response_class)
    assert not _json_bytes(routes[("/api/admin/audit", "GET")], UTF8JSONResponse)  # details of any type


def _dumps(value: Any) -> bytes:
    return JSONResponse(value).body


@given(
    texts=st.lists(st.text()),
    numbers=st.dictionaries(st.text(), st.integers()),
    at=st.datetimes(timezones=st.timezones() | st.none()),
    day=st.dates() | st.none(),
    kind=st.sampled_from(["a", 1, True, None]),
    flag=st.booleans(),
)
def test_pydantic_and_json_dumps_write_the_same_bytes_for_such_models(
    texts: list[str], numbers: dict[str, int], at: datetime, day: date | None, kind: Any, flag: bool
) -> None:
    value = Mixed(texts=texts, numbers=numbers, at=at, day=day, kind=kind, flag=flag)
    adapter = TypeAdapter(Mixed)
    try:
        expected: bytes | type[Exception] = _dumps(adapter.dump_python(value, mode="json"))
    except UnicodeEncodeError:  # a lone surrogate: neither writes it
        expected = UnicodeEncodeError
    if expected is UnicodeEncodeError:
        with pytest.raises(Exception, match="surrogates not allowed"):
            adapter.dump_json(value)
    else:
        assert adapter.dump_json(value) == expected
