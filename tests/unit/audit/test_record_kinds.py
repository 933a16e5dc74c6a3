# SPDX-License-Identifier: Apache-2.0
"""Every audit event is explicitly an access or a security record (its retention period)."""

from __future__ import annotations

from bastion.audit.events import RECORD_KINDS, AuditEvent, RecordKind, events_of


def test_every_event_has_a_kind() -> None:
    assert set(RECORD_KINDS) == set(AuditEvent)


def test_the_kinds_split_the_vocabulary() -> None:
    access, security = events_of(RecordKind.ACCESS), events_of(RecordKind.SECURITY)
    assert not access & security
    assert access | security == {event.value for event in AuditEvent}
    # What an investigation needs a year later is never an access record.
    for event in (
        AuditEvent.AUTH_SUCCESS,
        AuditEvent.AUTH_FAILURE,
        AuditEvent.ROLE_CHANGED,
        AuditEvent.API_KEY_CREATED,
        AuditEvent.CLIENT_BLOCKED,
        AuditEvent.GUARD_INPUT_BLOCKED,
        AuditEvent.SECRET_ROTATED,
        AuditEvent.ACCOUNT_ERASED,
    ):
        assert event.value in security
    assert {AuditEvent.CHAT_SESSION_CREATED.value, AuditEvent.TOKEN_REFRESHED.value} <= access
