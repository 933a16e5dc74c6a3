# SPDX-License-Identifier: Apache-2.0
"""Blocks placed and lifted go to the audit trail (ids and reasons, never request content)."""

from __future__ import annotations

from datetime import UTC, datetime

from bastion.audit.events import AuditEvent, Outcome
from bastion.audit.service import AuditService
from bastion.ratelimit.service import BlockListener, BlockNotice


def audit_blocks(audit: AuditService) -> BlockListener:
    """A block listener that records ``ratelimit.client_blocked`` / ``ratelimit.client_unblocked``.

    A block refused because it could lock out its administrators is ``client_blocked`` with
    outcome ``denied`` and the reasons in ``refused``; a forced one lists them in ``forced``.
    """

    async def record(notice: BlockNotice) -> None:
        kind, _, value = notice.identity.partition(":")
        details: dict[str, object] = {"reason": notice.reason, "identity": notice.identity[:128]}
        if notice.until is not None:
            details["until"] = datetime.fromtimestamp(notice.until, UTC).isoformat()
        if notice.risks:
            details["refused" if notice.action == "refused" else "forced"] = list(notice.risks)
        await audit.record(
            AuditEvent.CLIENT_UNBLOCKED if notice.action == "lifted" else AuditEvent.CLIENT_BLOCKED,
            outcome=Outcome.DENIED if notice.action == "refused" else Outcome.SUCCESS,
            actor_type="admin" if notice.actor else "system",
            actor_id=notice.actor[:64] if notice.actor else None,
            target_type=kind,
            target_id=value[:64],
            # One address in the address column; a network (an IPv6 client's prefix) in the detail.
            ip=value if kind == "ip" and "/" not in value else None,
            request_id=notice.request_id,
            details=details,
        )

    return record
