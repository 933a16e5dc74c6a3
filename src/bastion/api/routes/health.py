# SPDX-License-Identifier: Apache-2.0
"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import text
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bastion.api.deps import Require, public
from bastion.api.responses import UTF8JSONResponse
from bastion.auth.permissions import Permission
from bastion.observability.logging import get_logger

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0

CheckState = Literal["ok", "unavailable", "disabled"]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, CheckState]
    # The model provider is reported, not required: an open breaker answers 503 on chat calls by
    # itself, and failing readiness for it would pull every instance out of the load balancer.
    model: str


class Liveness:
    """``GET /health`` as bytes built once.

    Load balancers ask every instance every few seconds, and the answer never changes: it is
    sent as it is, without dependency solving or serializing a model (a third of a bare FastAPI
    endpoint's cost). It still passes every middleware layer (headers, limits, logs, metrics).
    ``health`` below is the same answer as a FastAPI route, which the API description lists.
    """

    def __init__(self) -> None:
        self.body = Health().model_dump_json().encode()
        self.headers = (
            (b"content-length", str(len(self.body)).encode()),
            (b"content-type", UTF8JSONResponse.media_type.encode()),
        )
        self.route: Route | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.route  # the template logs and metrics name the request by
        await send({"type": "http.response.start", "status": 200, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": self.body})


def liveness_route() -> Route:
    """The route serving ``Liveness``; ``create_app`` puts it first in the app's own table (an
    included router would copy it and serve HEAD too)."""
    endpoint = Liveness()
    route = endpoint.route = Route("/health", endpoint, methods=["GET"], include_in_schema=False)
    route.methods = {"GET"}  # as the FastAPI route: HEAD is not served
    return route


@router.get("/health", response_model=Health, dependencies=[Depends(public)])
async def health() -> Health:
    return Health()


async def _database(request: Request) -> CheckState:
    async with request.app.state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return "ok"


async def _redis(request: Request) -> CheckState:
    redis = request.app.state.redis
    if redis is None:
        return "disabled"
    await redis.ping()
    return "ok"


@router.get(
    "/health/ready",
    response_model=Readiness,
    dependencies=[Depends(Require(Permission.HEALTH_READ, or_local=True))],
    responses={503: {"model": Readiness}},
)
async def ready(request: Request) -> UTF8JSONResponse:
    log = get_logger("bastion.health")
    checks: dict[str, CheckState] = {}
    for name, probe in (("database", _database), ("redis", _redis)):
        try:
            checks[name] = await asyncio.wait_for(probe(request), CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # any failure of a dependency means "not ready", never a 500
            log.warning("readiness_check_failed", check=name, error=type(exc).__name__)
            checks[name] = "unavailable"
    ok = all(state != "unavailable" for state in checks.values())
    try:
        model = await asyncio.wait_for(request.app.state.llm.status(), CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # breaker state lives in Redis, which may be down
        log.warning("readiness_check_failed", check="model", error=type(exc).__name__)
        model = "unknown"
    body = Readiness(status="ready" if ok else "unavailable", checks=checks, model=model)
    return UTF8JSONResponse(body.model_dump(), status_code=200 if ok else 503)
