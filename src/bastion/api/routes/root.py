# SPDX-License-Identifier: Apache-2.0
"""``GET /``: what the service is and where to go next, for people and for host scanners.

Scanners (the MDN HTTP Observatory, securityheaders.com, ...) start at ``/`` and refuse to grade a
host whose ``/`` is a 404, so ``/`` answers a small JSON document under the same security headers
as every other response. No version: the software's version only helps an attacker pick an
exploit. The documentation links appear only when the docs are served (DOCS_ENABLED).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from bastion.api.deps import public, settings_of
from bastion.api.routes.docs import OPENAPI_URL

router = APIRouter(tags=["health"], dependencies=[Depends(public)])
SERVICE = "Bastion"


class Links(BaseModel):
    health: str = "/health"
    docs: str | None = None
    openapi: str | None = None


class Root(BaseModel):
    service: str = SERVICE
    links: Links


@router.get("/", response_model=Root, response_model_exclude_none=True)
async def root(request: Request) -> Root:
    if settings_of(request).docs_enabled:
        return Root(links=Links(docs="/docs", openapi=OPENAPI_URL))
    return Root(links=Links())
