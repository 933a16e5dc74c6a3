# SPDX-License-Identifier: Apache-2.0
"""Blocks placed and lifted go to the audit trail (ids and reasons, never request content)."""

from __future__ import annotations

from datetime import UTC, datetime

from bastion.audit.events import AuditEvent, Outcome
from bastion.audit.service import AuditService
from bastion.ratelimit.service import BlockListener, BlockNotice


def audit_blocks(audit: AuditService) -> BlockListener:
    """A block listener that records ``ratelimit.client_blocked`` / ``ratelimit.client_unblocked``."""

    async def record(notice: BlockNotice) -> None:
        kind, _, value = notice.identity.partition(":")
        details: dict[str, object] = {"reason": notice.reason, "identity": notice.identity[:128]}
        if notice.until is not None:
            details["until"] = datetime.fromtimestamp(notice.until, UTC).isoformat()
        await audit.record(
            AuditEvent.CLIENT_BLOCKED if notice.action == "placed" else AuditEvent.CLIENT_UNBLOCKED,
            outcome=Outcome.SUCCESS,
            actor_type="admin" if notice.actor else "system",
            actor_id=notice.actor[:64] if notice.actor else None,
            target_type=kind,
            target_id=value[:64],
            ip=value if kind == "ip" else None,
            request_id=notice.request_id,
            details=details,
        )

    return record
