# SPDX-License-Identifier: Apache-2.0
"""Anomaly alerts for administrators: list them (newest first, filtered, paged), acknowledge one.

``GET /api/admin/alerts?status=open&kind=auth_failures_ip&after=<next>&limit=50`` pages by the
alert's creation; ``POST /api/admin/alerts/{id}/acknowledge`` marks one acknowledged (repeating it
changes nothing and answers the same) and is audited. docs/alerts.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from bastion.alerts.detector import AnomalyDetector
from bastion.alerts.models import Alert
from bastion.alerts.rules import AlertKind
from bastion.alerts.service import AlertService
from bastion.api.audit import record_action
from bastion.api.content_types import JsonRoute
from bastion.api.cursors import CURSOR, cursor_of, position
from bastion.api.deps import require
from bastion.audit.events import AuditEvent
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.errors import NotFound, ServiceUnavailable

MANAGE = require(Permission.ALERTS_MANAGE)
router = APIRouter(
    prefix="/api/admin/alerts", tags=["admin"], dependencies=[Depends(MANAGE)], route_class=JsonRoute
)
Admin = Annotated[Principal, Depends(MANAGE)]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such alert"}}


class AlertOut(BaseModel):
    id: str
    kind: str
    severity: str
    subject: str
    count: int
    threshold: int
    window_seconds: int
    occurrences: int
    first_seen: datetime
    last_seen: datetime
    status: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    details: dict[str, Any]

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        return cls(
            id=alert.id,
            kind=alert.kind,
            severity=alert.severity,
            subject=alert.subject,
            count=alert.count,
            threshold=alert.threshold,
            window_seconds=alert.window_seconds,
            occurrences=alert.occurrences,
            first_seen=alert.first_seen,
            last_seen=alert.last_seen,
            status=alert.status,
            acknowledged_by=alert.acknowledged_by,
            acknowledged_at=alert.acknowledged_at,
            details=dict(alert.details),
        )


class AlertList(BaseModel):
    items: list[AlertOut]
    next: str | None = None


async def alert_service(request: Request) -> AlertService:
    detector: AnomalyDetector = request.app.state.anomaly
    if detector.alerts is None:  # between startup and shutdown only
        raise ServiceUnavailable("Alerts are not available", retry_after=1)
    return detector.alerts


Service = Annotated[AlertService, Depends(alert_service)]


@router.get("", response_model=AlertList)
async def list_alerts(
    request: Request,
    admin: Admin,
    service: Service,
    status: Literal["open", "acknowledged"] | None = None,
    kind: AlertKind | None = None,
    after: Annotated[str | None, Query(pattern=CURSOR, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> AlertList:
    page = await service.page(status=status, kind=kind, after=position(after), limit=limit)
    last = page.items[-1] if page.more else None
    await record_action(
        request,
        admin,
        AuditEvent.ALERTS_READ,
        target_type="alerts",
        target_id="list",
        details={"status": status, "kind": kind, "count": len(page.items)},
    )
    return AlertList(
        items=[AlertOut.of(alert) for alert in page.items],
        next=cursor_of(last.created_at, last.id) if last is not None else None,
    )


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, responses=NOT_FOUND)
async def acknowledge(alert_id: AlertId, request: Request, admin: Admin, service: Service) -> AlertOut:
    alert, changed = await service.acknowledge(alert_id, actor=admin.user_id or admin.api_key_id)
    if alert is None:
        raise NotFound("No such alert")
    if changed:
        await record_action(
            request, admin, AuditEvent.ALERT_ACKNOWLEDGED, target_type="alert", target_id=alert.id
        )
    return AlertOut.of(alert)
