# SPDX-License-Identifier: Apache-2.0
"""The event table covers each audit event the detectors watch, by its stored name."""

from __future__ import annotations

from bastion.alerts.signals import EVENT_KINDS, SignalKind
from bastion.audit.events import AuditEvent


def test_each_watched_event() -> None:
    pairs = {
        SignalKind.AUTH_FAILURE: {AuditEvent.AUTH_FAILURE},
        SignalKind.AUTH_SUCCESS: {AuditEvent.AUTH_SUCCESS},
        SignalKind.RATE_LIMITED: {AuditEvent.RATE_LIMIT_EXCEEDED},
        SignalKind.GUARD_VERDICT: {
            AuditEvent.GUARD_INPUT_FLAGGED,
            AuditEvent.GUARD_INPUT_BLOCKED,
            AuditEvent.GUARD_OUTPUT_FLAGGED,
            AuditEvent.GUARD_OUTPUT_WITHHELD,
        },
        SignalKind.SESSION_CREATED: {AuditEvent.CHAT_SESSION_CREATED},
    }
    for kind, events in pairs.items():
        assert all(EVENT_KINDS[str(event)] is kind for event in events)
    # Every name in the table is one the audit log writes.
    assert set(EVENT_KINDS) <= {str(event) for event in AuditEvent}
