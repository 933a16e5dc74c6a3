# SPDX-License-Identifier: Apache-2.0
"""Managed API keys: users manage their own at /api/keys; admins see every key at /api/admin/keys.

Admins may also revoke or rotate any key through /api/keys/{id}. Another user's key is a 404 for
everyone else. Keys themselves cannot manage keys (no scope grants ``keys:own``), except a key
with the admin scope.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, status

from bastion.api.audit import record_action
from bastion.api.content_types import JsonRoute
from bastion.api.deps import audit_context, require
from bastion.api.schemas.api_keys import KeyCreate, KeyCreated, KeyList, KeyOut
from bastion.audit.events import AuditEvent
from bastion.auth.api_key_service import MAX_LISTED_KEYS, ApiKeys, KeyView
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.auth.service import Context

router = APIRouter(prefix="/api/keys", tags=["keys"], route_class=JsonRoute)
admin_router = APIRouter(prefix="/api/admin/keys", tags=["admin"])

KeyId = Annotated[str, Path(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$")]
Ctx = Annotated[Context, Depends(audit_context)]


async def api_keys(request: Request) -> ApiKeys:
    runtime: ApiKeys = request.app.state.api_keys
    return runtime


# Their own keys (``keys:own``); everyone's with ``keys:manage`` besides, decided by the service.
Manager = Annotated[Principal, Depends(require(Permission.KEYS_OWN))]
Keys = Annotated[ApiKeys, Depends(api_keys)]


def _out(view: KeyView) -> KeyOut:
    return KeyOut(
        id=view.id,
        name=view.name,
        user_id=view.user_id,
        role=view.role,
        scopes=list(view.scopes),
        messages_per_hour=view.messages_per_hour,
        created_at=view.created_at,
        expires_at=view.expires_at,
        revoked_at=view.revoked_at,
        rotated_at=view.rotated_at,
        previous_valid_until=view.previous_valid_until,
        last_used_at=view.last_used_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses={409: {"description": "The account has reached its number of keys"}},
)
async def create_key(body: KeyCreate, actor: Manager, keys: Keys, context: Ctx) -> KeyCreated:
    created = await keys.create(
        actor,
        name=body.name,
        scopes=body.scopes,
        role=body.role,
        expires_at=body.expires_at,
        messages_per_hour=body.messages_per_hour,
        user_id=body.user_id,
        context=context,
    )
    return KeyCreated(**_out(created.key).model_dump(), key=created.secret)


# Newest first; a page larger than the bound is refused (422) rather than silently cut.
PageSize = Annotated[int, Query(ge=1, le=MAX_LISTED_KEYS, description="At most this many keys, newest first")]


@router.get("", response_model=KeyList)
async def list_keys(actor: Manager, keys: Keys, limit: PageSize = MAX_LISTED_KEYS) -> KeyList:
    return KeyList(items=[_out(view) for view in await keys.list(actor, limit=limit)])


@router.get("/{key_id}", response_model=KeyOut)
async def get_key(key_id: KeyId, actor: Manager, keys: Keys) -> KeyOut:
    return _out(await keys.get(actor, key_id))


@router.delete(
    "/{key_id}",
    response_model=KeyOut,
    summary="Revoke a key",
    description="Revocation, not deletion: the key stops working at once on every instance; its record "
    "stays, with `revoked_at` set (idempotent).",
)
async def revoke_key(key_id: KeyId, actor: Manager, keys: Keys, context: Ctx) -> KeyOut:
    return _out(await keys.revoke(actor, key_id, context=context))


@router.post(
    "/{key_id}/rotate",
    response_model=KeyCreated,
    responses={409: {"description": "The key is revoked or expired"}},
)
async def rotate_key(key_id: KeyId, actor: Manager, keys: Keys, context: Ctx) -> KeyCreated:
    created = await keys.rotate(actor, key_id, context=context)
    return KeyCreated(**_out(created.key).model_dump(), key=created.secret)


@admin_router.get("", response_model=KeyList)
async def list_all_keys(
    request: Request,
    actor: Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))],
    keys: Keys,
    user_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{1,32}$")] = None,
    limit: PageSize = MAX_LISTED_KEYS,
) -> KeyList:
    items = [_out(view) for view in await keys.list(actor, everyone=True, user_id=user_id, limit=limit)]
    await record_action(
        request,
        actor,
        AuditEvent.ADMIN_KEYS_READ,
        target_type="api_keys",
        target_id=user_id or "all",
        details={"count": len(items)},
    )
    return KeyList(items=items)
