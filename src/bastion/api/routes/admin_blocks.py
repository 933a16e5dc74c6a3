# SPDX-License-Identifier: Apache-2.0
"""The admin blocklist: list blocks, place one by hand, lift one.

Served at ``/api/admin/blocklist`` and, for existing clients, at ``/api/admin/blocks`` (one set of
routes under two prefixes). Kinds: ``ip`` (one address), ``cidr`` (a network; lifted with
``DELETE .../cidr/<address>/<prefix length>``), ``key`` (an API key id) and ``user`` (a user id).
``seconds`` is the block's length (default an hour); ``null`` blocks until lifted.

Values are stored canonical (``::ffff:192.0.2.1`` is ``192.0.2.1``; ``2001:db8::5/64`` is
``2001:db8::/64``). An IPv6 client is limited and blocked by its RATE_LIMIT_IPV6_PREFIX network,
so its automatic blocks are ``ip`` blocks on that network, lifted with ``DELETE .../ip/<net>/<len>``.
A block that could lock out the administrators (too wide a network, the loopback, the caller's
own address, account or key, a trusted proxy) is refused with 409 unless the body says
``"force": true``; a forced block is audited as such.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from bastion.api.audit import record_action
from bastion.api.content_types import require_json
from bastion.api.deps import request_client_ip, require
from bastion.audit.events import AuditEvent
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.errors import NotFound, request_id_of
from bastion.ratelimit.blocklist import PERMANENT_SECONDS, Blocklist, normalize
from bastion.ratelimit.lockout import Caller
from bastion.ratelimit.service import MAX_LISTED_BLOCKS
from bastion.ratelimit.storage.base import Block

Admin = Annotated[Principal, Depends(require(Permission.BLOCKLIST_MANAGE))]

BlockKind = Literal["ip", "cidr", "key", "user"]
# Ids of keys and users; IPs are checked (and normalized) separately.
_VALUE = r"^[A-Za-z0-9._:\-]{1,128}$"
_BODY_VALUE = r"^[A-Za-z0-9._:/\-]{1,128}$"  # CIDR values carry a "/"
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
    value: str = Field(pattern=_BODY_VALUE)
    seconds: int | None = Field(3600, ge=1, le=MAX_BLOCK_SECONDS)
    reason: str = Field("manual", pattern=r"^[a-z_]{1,32}$")
    # Place a block even though it could lock out its administrators (audited as forced).
    force: bool = False


def block_out(block: Block) -> BlockOut:
    return BlockOut(
        kind=block.kind,
        value=block.value,
        reason=block.reason,
        created_at=datetime.fromtimestamp(block.created_at, UTC),
        until=datetime.fromtimestamp(block.until, UTC),
    )


_INVALID = {
    "ip": ("ip_address", "Not an IP address"),
    "cidr": ("ip_address", "Not an IP network"),
    "key": ("string_pattern_mismatch", "Not an id"),
    "user": ("string_pattern_mismatch", "Not an id"),
}


def _identity(kind: str, value: str, where: str) -> str:
    try:
        identity = normalize(kind, value)
    except ValueError:
        identity = None
    # An ``ip`` network value names an IPv6 client's prefix, only to lift its automatic block;
    # a network is blocked by hand as a ``cidr`` block, which matches at any prefix length.
    if identity is None or (where == "body" and kind == "ip" and "/" in identity):
        error, message = _INVALID[kind]
        raise RequestValidationError([{"loc": (where, "value"), "type": error, "msg": message}])
    return identity


def get_blocklist(request: Request) -> Blocklist:
    blocklist: Blocklist = request.app.state.blocklist
    return blocklist


async def list_blocks(
    request: Request,
    admin: Admin,
    # A page larger than the bound is refused (422) rather than silently cut.
    limit: Annotated[
        int, Query(ge=1, le=MAX_LISTED_BLOCKS, description="At most this many blocks, soonest to end first")
    ] = MAX_LISTED_BLOCKS,
) -> BlockList:
    blocks = await get_blocklist(request).list(limit)
    await record_action(
        request,
        admin,
        AuditEvent.BLOCKLIST_READ,
        target_type="blocklist",
        target_id="list",
        details={"count": len(blocks)},
    )
    return BlockList(items=[block_out(block) for block in blocks])


async def place_block(body: BlockIn, request: Request, admin: Admin) -> BlockOut:
    identity = _identity(body.kind, body.value, "body")
    block = await get_blocklist(request).block(
        identity,
        seconds=body.seconds if body.seconds is not None else PERMANENT_SECONDS,
        reason=body.reason,
        actor=admin.subject,
        request_id=request_id_of(request),
        caller=Caller(ip=request_client_ip(request), principal=admin),
        force=body.force,
    )
    return block_out(block)


async def _lift(request: Request, identity: str, admin: Principal) -> Response:
    lifted = await get_blocklist(request).unblock(
        identity, actor=admin.subject, request_id=request_id_of(request)
    )
    if not lifted:
        raise NotFound("No block is in force for this client")
    return Response(status_code=204)


async def lift_block(
    kind: BlockKind,
    value: Annotated[str, Path(pattern=_VALUE)],
    request: Request,
    admin: Admin,
) -> Response:
    return await _lift(request, _identity(kind, value, "path"), admin)


async def lift_network_block(
    kind: Literal["ip", "cidr"],
    address: Annotated[str, Path(pattern=_VALUE)],
    prefix: Annotated[int, Path(ge=0, le=128)],
    request: Request,
    admin: Admin,
) -> Response:
    """Lift a network block, or (``ip``) the block on an IPv6 client's prefix network."""
    return await _lift(request, _identity(kind, f"{address}/{prefix}", "path"), admin)


def _routes(prefix: str) -> APIRouter:
    """The blocklist's routes under ``prefix``. Built once per name, not included twice with a
    prefix: each route then carries its whole path, the template metrics, access lines and audit
    records name a request by."""
    # require_json: like every JSON route, a text/plain or form body (a cross-site form) is a 415.
    routes = APIRouter(
        prefix=prefix,
        tags=["admin"],
        dependencies=[Depends(require(Permission.BLOCKLIST_MANAGE)), Depends(require_json)],
    )
    routes.add_api_route("", list_blocks, methods=["GET"], response_model=BlockList)
    routes.add_api_route(
        "",
        place_block,
        methods=["POST"],
        response_model=BlockOut,
        status_code=201,
        responses={409: {"description": "The block could lock out the operator; repeat with force"}},
    )
    routes.add_api_route("/{kind}/{value}", lift_block, methods=["DELETE"], status_code=204)
    network = "/{kind}/{address}/{prefix}"
    routes.add_api_route(network, lift_network_block, methods=["DELETE"], status_code=204)
    return routes


router = APIRouter()
router.include_router(_routes("/api/admin/blocklist"))
router.include_router(_routes("/api/admin/blocks"))
