# SPDX-License-Identifier: Apache-2.0
"""Journals: a caller's own entries. Others' entries, and ids that do not exist, are 404 alike.

Entries made with an API key belong to that key; entries made by a signed-in person belong to
that person (the same ownership as chat sessions, ``bastion.ownership``). Each answer carries the
entry's version as an ETag; a PUT or DELETE with ``If-Match`` is refused (412) when the entry
changed since that version was read.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from bastion.api.audit import record_action
from bastion.api.content_types import require_json
from bastion.api.cursors import CURSOR, cursor_of, position
from bastion.api.deps import guard_origin, require, settings_of
from bastion.api.ratelimit import rate_limit
from bastion.api.schemas.journal import EntryList, EntryOut, EntrySummaryOut, EntryWrite
from bastion.audit.events import AuditEvent
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.errors import InvalidField
from bastion.journal.service import EntryChanged, JournalService
from bastion.ownership import Owner
from bastion.ratelimit.policies import Policy

JOURNAL_USE = require(Permission.JOURNAL_USE)
# The permission is checked before anything else runs, the rate limits included: a caller without
# the journal scope never spends the owner's journal allowance.
router = APIRouter(prefix="/api/journal", tags=["journal"], dependencies=[Depends(JOURNAL_USE)])
EntryId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
JournalUser = Annotated[Principal, Depends(JOURNAL_USE)]
WRITE = Depends(rate_limit(Policy.JOURNAL_CREATE))
READ = Depends(rate_limit(Policy.JOURNAL_READ))
IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"?[0-9]{1,18}"?)\s*$'
# Read by ``expected_version`` (a header FastAPI would document as nullable, which clients then
# send as the text "null"); documented here as what it is.
IF_MATCH: dict[str, Any] = {
    "parameters": [
        {
            "name": "If-Match",
            "in": "header",
            "required": False,
            "description": "The entry's ETag as last read: the change is refused (412) if it changed since",
            "schema": {"type": "string", "maxLength": 64, "pattern": IF_MATCH_PATTERN},
        }
    ]
}
ETAG: dict[str, Any] = {"ETag": {"description": "The entry's version", "schema": {"type": "string"}}}
CHANGED: dict[int | str, dict[str, Any]] = {412: {"description": EntryChanged.default_message}}


async def journal_service(request: Request) -> JournalService:
    return JournalService(
        sessionmaker=request.app.state.sessionmaker,
        cipher=request.app.state.cipher,
        max_length=settings_of(request).max_journal_length,
        screen=request.app.state.text_services.screen_for(guard_origin(request)),
    )


Service = Annotated[JournalService, Depends(journal_service)]


def _etag(version: int) -> str:
    return f'"{version}"'


async def expected_version(request: Request) -> int | None:
    """The version an If-Match names (``"3"``, ``W/"3"`` or ``3``); ``*`` or none: any version."""
    values = request.headers.getlist("if-match")
    if not values:
        return None
    if len(values) > 1 or not re.fullmatch(IF_MATCH_PATTERN, values[0]) or len(values[0]) > 64:
        raise InvalidField("header.if-match", "etag", "If-Match names one ETag this service gave, or *")
    value = values[0].strip()
    return None if value == "*" else int(value.removeprefix("W/").strip('"'))


ExpectedVersion = Annotated[int | None, Depends(expected_version)]


async def _audit(request: Request, principal: Principal, event: AuditEvent, entry_id: str) -> None:
    await record_action(request, principal, event, target_type="journal_entry", target_id=entry_id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_json), WRITE],
    responses={201: {"headers": ETAG}},
)
async def create_entry(
    request: Request, response: Response, body: EntryWrite, principal: JournalUser, service: Service
) -> EntryOut:
    view = await service.create(Owner.of(principal), title=body.title, content=body.content)
    await _audit(request, principal, AuditEvent.JOURNAL_ENTRY_CREATED, view.id)
    response.headers["ETag"] = _etag(view.version)
    response.headers["Location"] = f"{router.prefix}/{view.id}"
    return EntryOut.entry(view)


@router.get("", dependencies=[READ])
async def list_entries(
    principal: JournalUser,
    service: Service,
    after: Annotated[str | None, Query(pattern=CURSOR, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> EntryList:
    page = await service.page(Owner.of(principal), after=position(after), limit=limit)
    items = [EntrySummaryOut.of(item) for item in page.items]
    last = page.items[-1] if page.more else None
    return EntryList(items=items, next=cursor_of(last.created_at, last.id) if last is not None else None)


@router.get("/{entry_id}", dependencies=[READ], responses={200: {"headers": ETAG}})
async def get_entry(
    entry_id: EntryId, response: Response, principal: JournalUser, service: Service
) -> EntryOut:
    view = await service.get(Owner.of(principal), entry_id)
    response.headers["ETag"] = _etag(view.version)
    return EntryOut.entry(view)


@router.put(
    "/{entry_id}",
    dependencies=[Depends(require_json), WRITE],
    responses={200: {"headers": ETAG}, **CHANGED},
    openapi_extra=IF_MATCH,
)
async def replace_entry(
    entry_id: EntryId,
    request: Request,
    response: Response,
    body: EntryWrite,
    principal: JournalUser,
    service: Service,
    expected: ExpectedVersion,
) -> EntryOut:
    view = await service.update(
        Owner.of(principal),
        entry_id,
        title=body.title,
        content=body.content,
        expected_version=expected,
    )
    await _audit(request, principal, AuditEvent.JOURNAL_ENTRY_UPDATED, view.id)
    response.headers["ETag"] = _etag(view.version)
    return EntryOut.entry(view)


@router.delete(
    "/{entry_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[WRITE],
    responses=CHANGED,
    openapi_extra=IF_MATCH,
)
async def delete_entry(
    entry_id: EntryId, request: Request, principal: JournalUser, service: Service, expected: ExpectedVersion
) -> Response:
    await service.delete(Owner.of(principal), entry_id, expected_version=expected)
    await _audit(request, principal, AuditEvent.JOURNAL_ENTRY_DELETED, entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
