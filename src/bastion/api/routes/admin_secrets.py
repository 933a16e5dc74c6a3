# SPDX-License-Identifier: Apache-2.0
"""``GET /api/admin/secrets``: each rotatable secret's age, never its value.

The same report as ``bastion secrets status --format json`` (``bastion.rotation.service.status``):
per secret its source (settings or rotated), version id (a one-way fingerprint or a key id),
creation time, age in days, the end of its predecessor's grace period and whether it is past
SECRET_ROTATION_DAYS, with one warning per overdue secret naming the command that rotates it.
Reading it is audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from bastion.api.audit import record_action
from bastion.api.deps import require, settings_of
from bastion.audit.events import AuditEvent
from bastion.auth.permissions import Permission
from bastion.auth.principal import Principal
from bastion.db.types import utcnow
from bastion.rotation.service import rotation_warnings, status

READ = require(Permission.SECRETS_READ)
router = APIRouter(prefix="/api/admin/secrets", tags=["admin"], dependencies=[Depends(READ)])
Admin = Annotated[Principal, Depends(READ)]


class SecretStatusOut(BaseModel):
    name: str
    source: str | None
    version: str | None
    created_at: datetime | None
    age_days: float | None
    previous_verifies_until: datetime | None
    rotation_due: bool


class SecretsStatus(BaseModel):
    rotation_days: int
    secrets: list[SecretStatusOut]
    warnings: list[str]


@router.get("", response_model=SecretsStatus)
async def secrets_status(request: Request, admin: Admin) -> SecretsStatus:
    settings = settings_of(request)
    found = await status(request.app.state.sessionmaker, settings)
    now = utcnow()
    period = settings.secret_rotation_days
    answer = SecretsStatus(
        rotation_days=period,
        secrets=[SecretStatusOut.model_validate(item.as_dict(now, period)) for item in found],
        warnings=rotation_warnings(found, now, period),
    )
    await record_action(
        request, admin, AuditEvent.SECRETS_STATUS_READ, target_type="secrets", target_id="status"
    )
    return answer
