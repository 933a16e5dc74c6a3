# SPDX-License-Identifier: Apache-2.0
"""An audit record as the admin API and the account export show it (``bastion.audit.sinks.document``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditRecordOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    timestamp: datetime
    event_type: str
    result: str
    actor_type: str | None
    actor_id: str | None
    target_type: str | None
    target_id: str | None
    ip_address: str | None
    method: str | None
    route: str | None
    status_code: int | None
    latency_ms: float | None
    request_id: str | None
    anomaly_flags: list[str]
    details: dict[str, Any]
    chain: str
    seq: int
    ip_commitment: str | None
    prev_hash: str
    hash: str
