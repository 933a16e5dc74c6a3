# SPDX-License-Identifier: Apache-2.0
"""The audit event vocabulary. New features add members here, never free-form strings."""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    SERVICE_STARTED = "service.started"
    CONFIG_CHANGED = "config.changed"
    SECRETS_GENERATED = "secrets.generated"
    # Rate limiting and abuse control (bastion.ratelimit)
    CLIENT_BLOCKED = "ratelimit.client_blocked"
    CLIENT_UNBLOCKED = "ratelimit.client_unblocked"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
