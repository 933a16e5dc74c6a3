# SPDX-License-Identifier: Apache-2.0
"""The event table maps today's audit names and the new ones alike."""

from __future__ import annotations

from bastion.alerts.signals import EVENT_KINDS, SignalKind
from bastion.audit.events import AuditEvent


def test_old_and_new_names_of_each_watched_event() -> None:
    pairs = {
        SignalKind.AUTH_FAILURE: {
            AuditEvent.LOGIN_FAILED,
            AuditEvent.TOKEN_REJECTED,
            AuditEvent.API_KEY_REJECTED,
        },
        SignalKind.AUTH_SUCCESS: {AuditEvent.LOGIN_SUCCEEDED},
        SignalKind.GUARD_VERDICT: {AuditEvent.GUARD_INPUT_FLAGGED, AuditEvent.GUARD_INPUT_BLOCKED},
        SignalKind.SESSION_CREATED: {AuditEvent.CHAT_SESSION_CREATED},
    }
    for kind, events in pairs.items():
        assert all(EVENT_KINDS[str(event)] is kind for event in events)
    assert EVENT_KINDS["auth_failure"] is SignalKind.AUTH_FAILURE
    assert EVENT_KINDS["auth_success"] is SignalKind.AUTH_SUCCESS
    assert EVENT_KINDS["rate_limit_exceeded"] is SignalKind.RATE_LIMITED
