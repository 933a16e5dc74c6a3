# SPDX-License-Identifier: Apache-2.0
"""The account holder's rights: everything they hold as one document, and erasure (docs/privacy.md).

Both are a person's own (``PERSON_ONLY``): no API key or service identity exports or erases an
account, whatever its scopes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse

from bastion.api.audit import record_action
from bastion.api.content_types import JsonRoute
from bastion.api.deps import audit_context, identity_of, require
from bastion.api.ratelimit import rate_limit
from bastion.api.routes.auth import clear_cookies
from bastion.api.schemas.privacy import AccountExportDocument, EraseRequest
from bastion.audit.events import AuditEvent
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.auth.service import Context
from bastion.privacy.erasure import AccountErasure
from bastion.privacy.export import AccountExport
from bastion.ratelimit.policies import Policy

router = APIRouter(prefix="/api/me", tags=["privacy"], route_class=JsonRoute)

EXPORT = require(Permission.ACCOUNT_EXPORT)
ERASE = require(Permission.ACCOUNT_ERASE)
Ctx = Annotated[Context, Depends(audit_context)]


async def account_export(request: Request) -> AccountExport:
    return AccountExport(identity=identity_of(request).service())


async def account_erasure(request: Request) -> AccountErasure:
    """Erasure with the app's denylist, session quota and key cache."""
    return AccountErasure(
        identity=identity_of(request).service(),
        quota=request.app.state.session_quota,
        keys_changed=request.app.state.api_keys.owner_changed,
    )


Erasure = Annotated[AccountErasure, Depends(account_erasure)]


@router.get(
    "/export",
    response_model=None,
    # The permission first, then the (expensive) export's own allowance: RATE_LIMIT_EXPORT.
    dependencies=[Depends(EXPORT), Depends(rate_limit(Policy.EXPORT))],
    responses={200: {"model": AccountExportDocument, "description": "Everything the account holds"}},
)
async def export(
    request: Request,
    principal: Annotated[Principal, Depends(EXPORT)],
    exporter: Annotated[AccountExport, Depends(account_export)],
) -> StreamingResponse:
    """The caller's account, API keys (never secrets), chat sessions with their messages, journal
    entries and audit events, as one JSON document written while it is read."""
    user_id = principal.user_id or principal.subject
    pieces = await exporter.document(user_id)  # 404 before anything is sent
    await record_action(
        request, principal, AuditEvent.ACCOUNT_EXPORTED, target_type="user", target_id=user_id
    )
    return StreamingResponse(
        pieces,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="bastion-export.json"'},
    )


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(ERASE), Depends(rate_limit(Policy.PASSWORD_CHANGE))],
    responses={401: {"description": "The password is wrong (counted like a failed login)"}},
)
async def erase(
    body: EraseRequest,
    request: Request,
    principal: Annotated[Principal, Depends(ERASE)],
    erasure: Erasure,
    context: Ctx,
) -> Response:
    """Erase the caller's account and everything it holds, after the password is given again.

    Every session ends on every instance, and a cookie session's cookies are cleared.
    """
    await erasure.erase_own(principal.user_id or principal.subject, body.password, context)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_cookies(response, request, identity_of(request))
    return response
