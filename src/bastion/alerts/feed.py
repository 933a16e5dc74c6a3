# SPDX-License-Identifier: Apache-2.0
"""An audit service that also feeds each record it stores to the anomaly detector.

Interim wiring: the identity service records through it, so failed and successful sign-ins
reach the detectors today. The rebuilt audit log feeds ``AnomalyDetector.observe_event`` itself,
from every record, and replaces this.
"""

from __future__ import annotations

from typing import Any

from bastion.alerts.detector import AnomalyDetector
from bastion.alerts.signals import Signal
from bastion.audit.events import AuditEvent, Outcome
from bastion.audit.models import AuditRecord
from bastion.audit.service import AuditService


def signal_of(record: AuditRecord) -> Signal:
    """What the detectors need of a stored record. The account concerned is the target when
    there is one (a failed sign-in targets the account), else the actor."""
    details = record.details or {}
    categories = details.get("categories")
    user_id = record.target_id if record.target_type == "user" else None
    if user_id is None and record.actor_type == "user":
        user_id = record.actor_id
    api_key_id = record.actor_id if record.actor_type == "api_key" else None
    return Signal(
        event_type=record.event,
        result="success" if record.outcome == Outcome.SUCCESS else "failure",
        ip=record.ip,
        user_id=user_id,
        api_key_id=api_key_id,
        role=None,
        categories=tuple(str(c) for c in categories) if isinstance(categories, list) else (),
        at=record.created_at,
    )


class ObservedAuditService(AuditService):
    """``AuditService`` whose every stored record is also observed by ``detector``."""

    def __init__(self, audit: AuditService, detector: AnomalyDetector) -> None:
        super().__init__(sessionmaker=audit.sessionmaker, clock=audit.clock)
        self.detector = detector

    # The same keywords as AuditService.record, passed through as they are.
    async def record(self, event: AuditEvent, **fields: Any) -> AuditRecord:
        record = await super().record(event, **fields)
        await self.detector.observe_event(signal_of(record))
        return record
