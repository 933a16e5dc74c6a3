# SPDX-License-Identifier: Apache-2.0
"""Blocks placed and lifted go to the audit trail (ids and reasons, never request content)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.types import Scope

from bastion.audit.events import AuditEvent, Result
from bastion.audit.service import AuditService
from bastion.observability.logging import get_logger
from bastion.ratelimit.service import BlockListener, BlockNotice


def audit_blocks(audit: AuditService) -> BlockListener:
    """A block listener that records ``ratelimit.client_blocked`` / ``ratelimit.client_unblocked``.

    A block refused because it could lock out its administrators is ``client_blocked`` with
    result ``failure`` and the reasons in ``refused``; a forced one lists them in ``forced``.
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
            result=Result.FAILURE if notice.action == "refused" else Result.SUCCESS,
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


class ViolationAudit:
    """``rate_limit_exceeded`` records: the first 429 of a client under a policy in each window.

    Every 429 is counted in the metrics and the access records; the audit log gets one record per
    (policy, address, key) and WINDOW, with how many refusals the previous record stood for, so
    a flood of refused requests cannot turn into a flood of chained writes. At most ``max_tracked``
    clients are remembered per window; beyond that, violations are counted in metrics only.
    """

    def __init__(self, *, window_seconds: float = 60.0, max_tracked: int = 10_000) -> None:
        self.window = window_seconds
        self.max_tracked = max_tracked
        self.recent: dict[tuple[str, str | None, str | None], list[float]] = {}
        self.log = get_logger("bastion.ratelimit")

    async def seen(self, scope: Scope) -> None:
        """Called once a request's answer has been sent; records it when it was a fresh 429."""
        state = scope.get("state") or {}
        policy = state.get("rate_limited")
        if not policy:
            return
        ip = state.get("client_ip")
        principal = state.get("principal")
        key_id = getattr(principal, "api_key_id", None)
        user_id = getattr(principal, "user_id", None)
        now = time.monotonic()
        key = (str(policy), ip, key_id)
        last = self.recent.get(key)
        if last is not None and now - last[0] < self.window:
            last[1] += 1
            return
        if last is None and len(self.recent) >= self.max_tracked:
            self.recent = {k: v for k, v in self.recent.items() if now - v[0] < self.window}
            if len(self.recent) >= self.max_tracked:
                return
        self.recent[key] = [now, 0]
        app = scope.get("app")
        sessionmaker = getattr(getattr(app, "state", None), "sessionmaker", None)
        if sessionmaker is None:
            return
        try:
            await AuditService(sessionmaker=sessionmaker).record(
                AuditEvent.RATE_LIMIT_EXCEEDED,
                result=Result.FAILURE,
                actor_type="api_key" if key_id else ("user" if user_id else "ip"),
                actor_id=key_id or user_id,
                ip=ip,
                status_code=429,
                details={"policy": str(policy), "earlier_in_window": int(last[1]) if last else 0},
            )
        except Exception as exc:  # the 429 has been sent; a failed record is logged, not raised
            self.log.warning(
                "audit_failed", audit_event=str(AuditEvent.RATE_LIMIT_EXCEEDED), error=type(exc).__name__
            )
