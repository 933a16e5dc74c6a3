# SPDX-License-Identifier: Apache-2.0
"""The audit log's feed into the anomaly detectors: every record, once stored, as a ``Signal``."""

from __future__ import annotations

from bastion.alerts.detector import AnomalyDetector
from bastion.alerts.signals import Signal
from bastion.audit.events import Result
from bastion.audit.models import AuditRecord
from bastion.audit.sinks import Observer


def signal_of(record: AuditRecord) -> Signal:
    """What the detectors need of a stored record. The account concerned is the target when
    there is one (a failed sign-in targets the account), else the actor."""
    details = record.details or {}
    categories = details.get("categories")
    user_id = record.target_id if record.target_type == "user" else None
    if user_id is None and record.actor_type == "user":
        user_id = record.actor_id
    api_key_id = record.actor_id if record.actor_type == "api_key" else None
    if api_key_id is None and record.target_type == "api_key":
        api_key_id = record.target_id  # a refused key is the target of its auth_failure
    role = details.get("role")
    return Signal(
        event_type=record.event_type,
        result="success" if record.result == Result.SUCCESS else "failure",
        ip=record.ip_address,
        user_id=user_id,
        api_key_id=api_key_id,
        role=role if isinstance(role, str) else None,
        categories=tuple(str(c) for c in categories) if isinstance(categories, list) else (),
        at=record.timestamp,
    )


def audit_observer(detector: AnomalyDetector) -> Observer:
    """An observer for ``AuditFanout.observers``: hands each record to ``detector``."""

    async def observe(record: AuditRecord) -> None:
        await detector.observe_event(signal_of(record))

    return observe
