# SPDX-License-Identifier: Apache-2.0
"""Admin view of temporary blocks: list them, place one by hand, lift one."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from bastion.api.deps import require_admin
from bastion.api.ratelimit import get_limiter
from bastion.auth.principal import Principal
from bastion.errors import NotFound, request_id_of
from bastion.ratelimit.storage.base import Block

router = APIRouter(prefix="/api/admin/blocks", tags=["admin"], dependencies=[Depends(require_admin)])

BlockKind = Literal["ip", "key", "user"]
# Ids of keys and users; IPs are checked (and normalized) separately.
_VALUE = r"^[A-Za-z0-9._:\-]{1,128}$"
MAX_BLOCK_SECONDS = 30 * 24 * 3600


class BlockOut(BaseModel):
    kind: str
    value: str
    reason: str
    created_at: datetime
    until: datetime


class BlockList(BaseModel):
    items: list[BlockOut]


class BlockIn(BaseModel):
    kind: BlockKind
    value: str = Field(pattern=_VALUE)
    seconds: int = Field(3600, ge=1, le=MAX_BLOCK_SECONDS)
    reason: str = Field("manual", pattern=r"^[a-z_]{1,32}$")


def _out(block: Block) -> BlockOut:
    return BlockOut(
        kind=block.kind,
        value=block.value,
        reason=block.reason,
        created_at=datetime.fromtimestamp(block.created_at, UTC),
        until=datetime.fromtimestamp(block.until, UTC),
    )


def _identity(kind: str, value: str, where: str) -> str:
    if kind == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise RequestValidationError(
                [{"loc": (where, "value"), "type": "ip_address", "msg": "Not an IP address"}]
            ) from None
        value = str(address)
    return f"{kind}:{value}"


@router.get("", response_model=BlockList)
async def list_blocks(request: Request) -> BlockList:
    blocks = await get_limiter(request).list_blocks()
    return BlockList(items=[_out(block) for block in blocks])


@router.post("", response_model=BlockOut, status_code=201)
async def place_block(
    body: BlockIn, request: Request, admin: Annotated[Principal, Depends(require_admin)]
) -> BlockOut:
    identity = _identity(body.kind, body.value, "body")
    block = await get_limiter(request).block(
        identity,
        seconds=body.seconds,
        reason=body.reason,
        actor=admin.subject,
        request_id=request_id_of(request),
    )
    return _out(block)


@router.delete("/{kind}/{value}", status_code=204)
async def lift_block(
    kind: BlockKind,
    value: Annotated[str, Path(pattern=_VALUE)],
    request: Request,
    admin: Annotated[Principal, Depends(require_admin)],
) -> Response:
    identity = _identity(kind, value, "path")
    lifted = await get_limiter(request).unblock(
        identity, actor=admin.subject, request_id=request_id_of(request)
    )
    if not lifted:
        raise NotFound("No block is in force for this client")
    return Response(status_code=204)
