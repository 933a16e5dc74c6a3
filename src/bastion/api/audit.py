# SPDX-License-Identifier: Apache-2.0
"""Audit records of what a caller did to something they own (ids only, never content)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from bastion.api.deps import request_client_ip
from bastion.audit.events import AuditEvent
from bastion.audit.service import AuditService
from bastion.auth.principal import Principal
from bastion.errors import request_id_of


async def record_action(
    request: Request,
    principal: Principal,
    event: AuditEvent,
    *,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """One audit row: the acting key or person, the target's type and id, where the call came from."""
    await AuditService(sessionmaker=request.app.state.sessionmaker).record(
        event,
        actor_type="api_key" if principal.api_key_id else "user",
        actor_id=principal.api_key_id or principal.user_id,
        target_type=target_type,
        target_id=target_id,
        ip=request_client_ip(request),
        request_id=request_id_of(request),
        details=details,
    )
