# SPDX-License-Identifier: Apache-2.0
"""The audit event vocabulary. New features add members here, never free-form strings."""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    SERVICE_STARTED = "service.started"
    CONFIG_CHANGED = "config.changed"
    SECRETS_GENERATED = "secrets.generated"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
