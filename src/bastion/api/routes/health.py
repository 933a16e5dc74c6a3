# SPDX-License-Identifier: Apache-2.0
"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from sqlalchemy import text

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
