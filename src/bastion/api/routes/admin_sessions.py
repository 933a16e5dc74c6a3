# SPDX-License-Identifier: Apache-2.0
"""Every owner's active chat sessions for administrators: counts, the list, and ending one.

``GET /api/admin/sessions`` answers the counts (active sessions in all, the quota's slots held,
the busiest owners) and the active sessions newest first, keyset-paged (``next`` goes back as
``after``), optionally of one ``owner`` (``key:<id>`` or ``user:<id>``). Ids, owners, times and
message counts only: titles and messages are the owners' sealed content.
``DELETE /api/admin/sessions/{id}`` ends one the way its owner's DELETE does (messages deleted,
quota slot freed). Both are audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel

from bastion.api.audit import record_action
from bastion.api.cursors import ID_CURSOR, cursor_of, position
from bastion.api.deps import require, settings_of
from bastion.api.routes.chat import SessionId
from bastion.audit.events import AuditEvent
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.chat.admin import SessionAdministration, parse_owner
from bastion.errors import InvalidField

MANAGE = require(Permission.CHAT_SESSIONS_MANAGE)
router = APIRouter(prefix="/api/admin/sessions", tags=["admin"], dependencies=[Depends(MANAGE)])
Admin = Annotated[Principal, Depends(MANAGE)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such chat session"}}


async def session_administration(request: Request) -> SessionAdministration:
    state = request.app.state
    return SessionAdministration(chat=state.text_services.chat, sessionmaker=state.sessionmaker)


Service = Annotated[SessionAdministration, Depends(session_administration)]


class OwnerCount(BaseModel):
    owner: str
    active: int


class ActiveSessionOut(BaseModel):
    id: str
    owner: str
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    message_count: int


class SessionCountsOut(BaseModel):
    total: int
    slots_held: int
    max_total: int
    max_per_owner: int
    busiest_owners: list[OwnerCount]
    owner_active: int | None = None


class ActiveSessionPage(BaseModel):
    counts: SessionCountsOut
    items: list[ActiveSessionOut]
    next: str | None = None


@router.get("", response_model=ActiveSessionPage)
async def list_active_sessions(
    request: Request,
    admin: Admin,
    service: Service,
    owner: Annotated[
        str | None, Query(pattern=r"^(key|user):[A-Za-z0-9_-]{1,64}$", description="key:<id> or user:<id>")
    ] = None,
    after: Annotated[
        str | None, Query(pattern=ID_CURSOR, description="The `next` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ActiveSessionPage:
    who = parse_owner(owner) if owner is not None else None
    if owner is not None and who is None:  # pragma: no cover - the pattern admits only key: and user:
        raise InvalidField("query.owner", "value_error", "An owner is key:<id> or user:<id>")
    counts = await service.counts(who)
    rows = await service.page(owner=who, before=position(after), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    settings = settings_of(request)
    page = ActiveSessionPage(
        counts=SessionCountsOut(
            total=counts.total,
            slots_held=counts.slots_held,
            max_total=settings.max_total_sessions,
            max_per_owner=settings.max_sessions_per_api_key,
            busiest_owners=[OwnerCount(owner=identity, active=n) for identity, n in counts.busiest],
            owner_active=counts.owner_active,
        ),
        items=[ActiveSessionOut.model_validate(row, from_attributes=True) for row in rows],
        next=cursor_of(rows[-1].created_at, rows[-1].id) if more else None,
    )
    await record_action(
        request,
        admin,
        AuditEvent.ADMIN_SESSIONS_READ,
        target_type="chat_sessions",
        target_id=owner or "all",
        details={"count": len(page.items)},
    )
    return page


@router.delete("/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def end_session(session_id: SessionId, request: Request, admin: Admin, service: Service) -> Response:
    owner = await service.end(session_id)
    await record_action(
        request,
        admin,
        AuditEvent.ADMIN_SESSION_ENDED,
        target_type="chat_session",
        target_id=session_id,
        details={"owner": owner.identity},
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
