# SPDX-License-Identifier: Apache-2.0
"""Administration of accounts: list, roles, disable/enable, unlock, forced logout, invitations. Admins only.

``GET /api/admin/users`` lists accounts newest first, filtered by ``role`` and ``active`` and paged by
keyset (``next`` goes back as ``after``). ``email`` finds the one account with that exact address
(normalized as at registration) through its blind index: addresses are stored sealed, so a
substring or prefix search is impossible by design (docs/admin-api.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel

from bastion.api.audit import record_action
from bastion.api.content_types import JsonRoute
from bastion.api.cursors import CURSOR, cursor_of, position
from bastion.api.deps import audit_context, get_settings, identity_service, require
from bastion.api.routes.api_keys import api_keys
from bastion.api.routes.me import Erasure
from bastion.api.schemas.auth import InvitationOut, InvitationRequest, RoleChange, UserDetail
from bastion.audit.events import AuditEvent
from bastion.auth.api_key_service import ApiKeys
from bastion.auth.emails import MAX_EMAIL_LENGTH, InvalidEmail, normalize_email
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal, Role
from bastion.auth.service import Context, IdentityService
from bastion.errors import Forbidden, InvalidField
from bastion.settings import Settings

router = APIRouter(prefix="/api/admin/users", tags=["admin"], route_class=JsonRoute)

Service = Annotated[IdentityService, Depends(identity_service)]
Ctx = Annotated[Context, Depends(audit_context)]
Keys = Annotated[ApiKeys, Depends(api_keys)]
Config = Annotated[Settings, Depends(get_settings)]
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.USERS_READ))]
UserId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]{1,32}$")]


def _not_self(admin: Principal, user_id: str) -> None:
    # An admin cannot change their own standing here: no self-escalation, no accidental lock-out.
    if admin.user_id == user_id:
        raise Forbidden("Administrators cannot change their own account here")


class UserPage(BaseModel):
    items: list[UserDetail]
    next: str | None = None


@router.get("", response_model=UserPage)
async def list_users(
    admin: Reader,
    service: Service,
    request: Request,
    role: Role | None = None,
    active: bool | None = None,
    email: Annotated[
        str | None, Query(max_length=MAX_EMAIL_LENGTH, description="Exact address (blind index)")
    ] = None,
    after: Annotated[str | None, Query(pattern=CURSOR, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> UserPage:
    address = None
    if email is not None:
        try:
            address = normalize_email(email)
        except InvalidEmail as exc:
            raise InvalidField("query.email", "value_error", str(exc)) from None
    users = await service.list_users(
        role=role, active=active, email=address, before=position(after), limit=limit + 1
    )
    more = len(users) > limit
    users = users[:limit]
    page = UserPage(
        items=[UserDetail.of(user, service) for user in users],
        next=cursor_of(users[-1].created_at, users[-1].id) if more else None,
    )
    # Listing accounts shows their addresses: audited as a read of user data, with the filters
    # and how many were shown (never the address searched for).
    await record_action(
        request,
        admin,
        AuditEvent.ADMIN_USER_READ,
        target_type="users",
        target_id="list",
        details={
            "role": role,
            "active": active,
            "by_email": email is not None,
            "count": len(page.items),
        },
    )
    return page


@router.get("/{user_id}", response_model=UserDetail)
async def get_user(user_id: UserId, admin: Reader, service: Service, request: Request) -> UserDetail:
    detail = UserDetail.of(await service.me(user_id), service)
    # Reading someone's account (their e-mail, role, standing) is itself audited.
    await record_action(request, admin, AuditEvent.ADMIN_USER_READ, target_type="user", target_id=user_id)
    return detail


@router.post("/{user_id}/role", response_model=UserDetail)
async def set_role(
    user_id: UserId, body: RoleChange, admin: Admin, service: Service, context: Ctx, keys: Keys
) -> UserDetail:
    _not_self(admin, user_id)
    detail = UserDetail.of(
        await service.set_role(user_id, body.role, context, actor_id=admin.user_id), service
    )
    # Verified keys are cached with their owner's role: a demoted admin's key loses admin now.
    await keys.owner_changed()
    return detail


@router.post("/{user_id}/disable", response_model=UserDetail)
async def disable(user_id: UserId, admin: Admin, service: Service, context: Ctx, keys: Keys) -> UserDetail:
    _not_self(admin, user_id)
    detail = UserDetail.of(await service.set_active(user_id, False, context, actor_id=admin.user_id), service)
    await keys.owner_changed()  # a disabled account's keys stop at once, on every instance
    return detail


@router.post("/{user_id}/enable", response_model=UserDetail)
async def enable(user_id: UserId, admin: Admin, service: Service, context: Ctx) -> UserDetail:
    _not_self(admin, user_id)
    return UserDetail.of(await service.set_active(user_id, True, context, actor_id=admin.user_id), service)


@router.post("/{user_id}/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(user_id: UserId, admin: Admin, service: Service, context: Ctx) -> Response:
    await service.logout_all(user_id, context, actor_id=admin.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def erase(user_id: UserId, admin: Admin, erasure: Erasure, context: Ctx) -> Response:
    """Erase an account and everything it holds (docs/privacy.md); audited with the admin as actor.

    Not one's own: a person erases their own account with DELETE /api/me and their password.
    """
    _not_self(admin, user_id)
    await erasure.erase(user_id, context, actor_id=admin.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{user_id}/unlock", response_model=UserDetail)
async def unlock(user_id: UserId, admin: Admin, service: Service, context: Ctx) -> UserDetail:
    """Lift the account-wide login lock (audited); the account's own password still applies."""
    return UserDetail.of(await service.unlock(user_id, context, actor_id=admin.user_id), service)


invitations = APIRouter(prefix="/api/admin/invitations", tags=["admin"], route_class=JsonRoute)


@invitations.post("", status_code=status.HTTP_201_CREATED, response_model=InvitationOut)
async def invite(
    body: InvitationRequest, admin: Admin, service: Service, context: Ctx, settings: Config
) -> InvitationOut:
    """An invitation code to register with (REGISTRATION=invite), valid INVITATION_DAYS, shown once."""
    invited = await service.invite(
        body.email, context, actor_id=admin.user_id, lifetime=timedelta(days=settings.invitation_days)
    )
    return InvitationOut(code=invited.code, email=invited.email, expires_at=invited.expires_at)
