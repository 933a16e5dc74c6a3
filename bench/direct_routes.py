# SPDX-License-Identifier: Apache-2.0
"""A route shaped like ``POST /api/sessions/{session_id}/messages``, answered by FastAPI's handler
and by ``DirectRoute``'s.

Run: ``.venv/bin/python bench/direct_routes.py [--requests 20000] [--rounds 5]``.

The route takes a constrained path parameter, a three-field model body, the request and the
response, behind one request-only dependency (as ``Require`` is); its endpoint sets a header on
the response and returns a model. Each candidate is the whole app called in a loop as an ASGI
application, in process: FastAPI's ``APIRoute`` in an included router, FastAPI's handler served
flat (a flat route that does not qualify), ``DirectRoute`` in an included router, and
``DirectRoute`` served flat (as Bastion serves its routes). The handlers
alone are measured too: FastAPI's ``get_request_handler`` and ``direct_handler`` for the same
route, called with a request (the exit stacks FastAPI's handler expects set on its scope).
Rounds alternate between the candidates; medians of µs per request are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message, Scope

sys.path.insert(0, str(FilePath(__file__).resolve().parents[1] / "src"))

from bastion.api import direct as direct_module
from bastion.api.direct import DirectRoute, direct_handler
from bastion.api.flat import flatten_included

SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
BODY = json.dumps({"content": "I slept badly again.", "max_tokens": 100, "temperature": 0.5}).encode()
PATH = "/api/sessions/a1b2c3d4/messages"


class MessageCreate(BaseModel):
    content: str = Field(max_length=10_000, pattern=r"\S")
    max_tokens: int | None = Field(None, ge=1, le=32_768)
    temperature: float | None = Field(None, ge=0, le=2)


class MessageOut(BaseModel):
    session_id: str
    content: str


async def principal(request: Request) -> str:
    return "user"


def build(route_class: type[APIRoute], *, flat: bool, direct: bool = True) -> FastAPI:
    """The app; ``direct=False`` builds ``DirectRoute``s that never qualify (FastAPI's handler
    behind Bastion's flat routes, as this route was answered before it qualified)."""
    if not direct:
        original = direct_module.direct_handler
        direct_module.direct_handler = lambda route: None
        try:
            return build(route_class, flat=flat)
        finally:
            direct_module.direct_handler = original
    router = APIRouter(prefix="/api/sessions", route_class=route_class)

    @router.post("/{session_id}/messages", dependencies=[Depends(principal)], response_model=MessageOut)
    async def post_message(
        session_id: SessionId, body: MessageCreate, request: Request, response: Response
    ) -> MessageOut:
        response.headers["X-Content-Warning"] = "none"
        return MessageOut(session_id=session_id, content=body.content)

    app = FastAPI()
    app.include_router(router)
    if flat:
        flatten_included(app)
    return app


def scope_of(app: FastAPI | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("bench", 80),
        **({"app": app} if app is not None else {}),
    }


async def receive() -> Message:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def app_loop(app: FastAPI, requests: int) -> float:
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(requests):
        await app(scope_of(), receive, send)
    elapsed = time.perf_counter() - started
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected answers: {set(statuses)}")
    return elapsed / requests * 1e6


def handlers() -> dict[str, Callable[[Request], Awaitable[Response]]]:
    app = build(APIRoute, flat=True)  # flattened: each route is its own top-level APIRoute
    route = next(r for r in app.router.routes if isinstance(r, APIRoute) and r.path.endswith("/messages"))
    direct = direct_handler(route)
    assert direct is not None
    return {"FastAPI's handler": APIRoute.get_route_handler(route), "direct_handler": direct}


async def handler_loop(handler: Callable[[Request], Awaitable[Response]], requests: int) -> float:
    app = FastAPI()
    route_scope = scope_of(app)
    route_scope["path_params"] = {"session_id": "a1b2c3d4"}
    started = time.perf_counter()
    for _ in range(requests):
        scope = dict(route_scope)
        async with AsyncExitStack() as stack:
            scope["fastapi_middleware_astack"] = scope["fastapi_inner_astack"] = stack
            scope["fastapi_function_astack"] = stack
            response = await handler(Request(scope, receive))
        if response.status_code != 200:
            raise SystemExit(f"unexpected answer: {response.status_code}")
    return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, rounds: int) -> None:
    apps = {
        "FastAPI, included": build(APIRoute, flat=False),
        "FastAPI's handler, flat": build(DirectRoute, flat=True, direct=False),
        "DirectRoute, included": build(DirectRoute, flat=False),
        "DirectRoute, flat": build(DirectRoute, flat=True),
    }
    alone = handlers()
    runs: dict[str, list[float]] = {name: [] for name in [*apps, *alone]}
    for app in apps.values():  # warm-up
        await app_loop(app, 500)
    for handler in alone.values():
        await handler_loop(handler, 500)
    for _ in range(rounds):
        for name, app in apps.items():
            runs[name].append(await app_loop(app, requests))
        for name, handler in alone.items():
            runs[name].append(await handler_loop(handler, requests))
    print(f"POST {PATH}: µs per request, median of {rounds} rounds of {requests}")
    for name, values in runs.items():
        print(f"  {name:24} {statistics.median(values):7.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.rounds))
