# SPDX-License-Identifier: Apache-2.0
"""``GET /api/admin/audit``: the audit log for administrators, filtered and paged newest first.

Filters: ``event_type``, ``actor_id``, ``ip_address`` (any spelling of the address), ``result``,
and the time range ``since`` (inclusive) to ``until`` (exclusive). Paging is by keyset: ``next``
is the position after the last record of the page, so records written meanwhile never shift a
page. Each record is shown as the sinks and the export show it (docs/audit.md): ids, route,
status, the details object (never bodies, secrets or tokens), the chain position and hashes.
Each search is itself audited (``audit_queried``: the filters and how many records were shown).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, BeforeValidator

from bastion.addresses import canonical_address, parse_address
from bastion.api.audit import record_action
from bastion.api.cursors import CURSOR, cursor_of, position
from bastion.api.deps import require
from bastion.api.schemas.audit import AuditRecordOut
from bastion.audit.events import AuditEvent
from bastion.audit.repository import AuditRepository
from bastion.audit.sinks import document
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.db.session import read_only
from bastion.errors import InvalidField

router = APIRouter(
    prefix="/api/admin/audit", tags=["admin"], dependencies=[Depends(require(Permission.AUDIT_READ))]
)
NAME = r"^[a-z][a-z0-9_]{0,63}$"
ID = r"^[A-Za-z0-9._:\-]{1,64}$"


def _iso_8601(value: object) -> object:
    # The documented form is an RFC 3339 date-time; pydantic would also read a bare number as
    # seconds since the epoch, which the schema does not admit (and no operator means).
    if isinstance(value, str) and "-" not in value:
        raise ValueError("Not an RFC 3339 date-time with a time zone (2026-01-31T12:00:00Z)")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]


class AuditPage(BaseModel):
    items: list[AuditRecordOut]
    next: str | None = None


@router.get("")
async def list_audit_records(
    request: Request,
    admin: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    event_type: Annotated[str | None, Query(pattern=NAME)] = None,
    actor_id: Annotated[str | None, Query(pattern=ID)] = None,
    ip_address: Annotated[str | None, Query(max_length=64)] = None,
    result: Literal["success", "failure"] | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    after: Annotated[str | None, Query(pattern=CURSOR, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    if ip_address is not None and parse_address(ip_address) is None:
        raise InvalidField("query.ip_address", "ip_address", "Not an IP address")
    async with read_only(request.app.state.sessionmaker) as session:
        rows = await AuditRepository(session).page(
            event_type=event_type,
            actor_id=actor_id,
            ip_address=canonical_address(ip_address.strip()) if ip_address is not None else None,
            result=result,
            since=since,
            until=until,
            before=position(after),
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    items = [AuditRecordOut.model_validate(document(row)) for row in rows]
    filters = {
        "event_type": event_type,
        "actor_id": actor_id,
        "result": result,
        "by_ip": ip_address is not None,
    }
    await record_action(
        request,
        admin,
        AuditEvent.AUDIT_QUERIED,
        target_type="audit_log",
        target_id="query",
        details={**filters, "count": len(items)},
    )
    return AuditPage(items=items, next=cursor_of(rows[-1].timestamp, rows[-1].id) if more else None)
