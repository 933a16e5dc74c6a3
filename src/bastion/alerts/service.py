# SPDX-License-Identifier: Apache-2.0
"""Raising alerts (stored, audited, counted, posted) and the administrators' view of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.alerts.models import Alert
from bastion.alerts.repository import ACKNOWLEDGED, OPEN, AlertRepository
from bastion.alerts.rules import SEVERITIES, AlertKind
from bastion.audit.events import AuditEvent
from bastion.audit.service import AuditService
from bastion.crypto.randomness import new_id
from bastion.db.session import read_only, unit_of_work
from bastion.db.types import utcnow
from bastion.observability.delivery import Courier
from bastion.observability.logging import get_logger
from bastion.observability.metrics import NullMetrics

MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class Raised:
    """What a detector saw: ``count`` events about ``subject`` went above ``threshold`` in ``window``."""

    kind: AlertKind
    subject: str
    count: int
    threshold: int
    window: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertPage:
    items: list[Alert]
    more: bool


def as_payload(alert: Alert) -> dict[str, Any]:
    """The alert as administrators and the webhook see it (docs/alerts.md)."""
    return {
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "subject": alert.subject,
        "count": alert.count,
        "threshold": alert.threshold,
        "window_seconds": alert.window_seconds,
        "occurrences": alert.occurrences,
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "status": alert.status,
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "details": dict(alert.details),
    }


class AlertService:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: NullMetrics,
        webhook: Courier | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.audit = AuditService(sessionmaker=sessionmaker, clock=clock)
        self.metrics = metrics
        self.webhook = webhook
        self.clock = clock
        self.log = get_logger("bastion.alerts")

    async def raise_alert(self, raised: Raised) -> Alert:
        """Store the alert (or update the open one about the same subject), audit, count and post it.

        Each step fails on its own: an alert about a database outage cannot be stored, and still
        reaches the log, the metrics and the webhook.
        """
        now = self.clock()
        alert = Alert(
            id=new_id(),
            kind=str(raised.kind),
            severity=str(SEVERITIES[raised.kind]),
            subject=raised.subject,
            count=raised.count,
            threshold=raised.threshold,
            window_seconds=raised.window,
            occurrences=1,
            created_at=now,
            first_seen=now,
            last_seen=now,
            status=OPEN,
            details=dict(raised.details),
        )
        try:
            alert = await self._store(alert)
        except Exception as exc:
            self.log.error("alert_not_stored", alert_id=alert.id, kind=alert.kind, error=type(exc).__name__)
        self.metrics.alert_raised(alert.kind)
        self.log.warning(
            "alert_raised", alert_id=alert.id, kind=alert.kind, subject=alert.subject, count=alert.count
        )
        if self.webhook is not None:
            self.webhook.offer(as_payload(alert))
        try:
            await self.audit.record(
                AuditEvent.ALERT_RAISED,
                target_type="alert",
                target_id=alert.id,
                # The kind as a flag (WHERE anomaly_flags LIKE '%auth_failures%'), and the address
                # in its column when the subject is one, so the runbook's query by address finds it.
                anomaly_flags=[alert.kind],
                ip=alert.subject[3:]
                if alert.subject.startswith("ip:") and "/" not in alert.subject
                else None,
                details={
                    "kind": alert.kind,
                    "severity": alert.severity,
                    "subject": alert.subject,
                    "count": alert.count,
                    "threshold": alert.threshold,
                    "window_seconds": alert.window_seconds,
                },
            )
        except Exception as exc:
            self.log.error("alert_not_audited", alert_id=alert.id, error=type(exc).__name__)
        return alert

    async def _store(self, alert: Alert) -> Alert:
        async with unit_of_work(self.sessionmaker) as session:
            repo = AlertRepository(session)
            existing = await repo.open_alert(alert.kind, alert.subject)
            if existing is None:
                session.add(alert)
                return alert
            # Still open from an earlier window: the same alert, seen again.
            for name in ("count", "threshold", "window_seconds", "last_seen"):
                setattr(existing, name, getattr(alert, name))
            existing.occurrences += 1
            existing.details = {**existing.details, **alert.details}
            return existing

    async def page(
        self, *, status: str | None, kind: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> AlertPage:
        size = min(max(limit, 1), MAX_PAGE)
        async with read_only(self.sessionmaker) as session:
            rows = await AlertRepository(session).page(status=status, kind=kind, after=after, limit=size)
        return AlertPage(items=list(rows), more=len(rows) == size)

    async def acknowledge(self, alert_id: str, *, actor: str | None) -> tuple[Alert | None, bool]:
        """Mark the alert acknowledged: (the alert or None when unknown, whether this call changed it)."""
        async with unit_of_work(self.sessionmaker) as session:
            alert = await AlertRepository(session).get(alert_id)
            if alert is None or alert.status == ACKNOWLEDGED:
                return alert, False
            alert.status = ACKNOWLEDGED
            alert.acknowledged_by = actor
            alert.acknowledged_at = self.clock()
            return alert, True
