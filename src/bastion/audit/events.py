# SPDX-License-Identifier: Apache-2.0
"""The audit event vocabulary. New features add members here, never free-form strings."""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    SERVICE_STARTED = "service.started"
    CONFIG_CHANGED = "config.changed"
    SECRETS_GENERATED = "secrets.generated"
    SECRET_ROTATED = "secrets.rotated"  # noqa: S105 - an event name; details name the secret, never its value
    CONTENT_SIGNING_KEY_ROTATED = "secrets.content_signing_key_rotated"
    # identity
    USER_REGISTERED = "auth.register"
    LOGIN_SUCCEEDED = "auth.login"
    LOGIN_FAILED = "auth.login_failed"
    ACCOUNT_LOCKED = "auth.lockout"
    ACCOUNT_UNLOCKED = "auth.unlock"
    TOKEN_REFRESHED = "auth.refresh"  # noqa: S105
    TOKEN_REJECTED = "auth.token_rejected"  # noqa: S105
    REFRESH_REUSE_DETECTED = "auth.refresh_reuse_detected"
    LOGOUT = "auth.logout"
    LOGOUT_ALL = "auth.logout_all"
    SESSIONS_ENDED_ALL = "auth.sessions_ended_all"  # every user's sessions (emergency rotation)
    PASSWORD_CHANGED = "auth.password_changed"  # noqa: S105
    PASSWORD_RESET_REQUESTED = "auth.password_reset_requested"  # noqa: S105
    PASSWORD_RESET_COMPLETED = "auth.password_reset"  # noqa: S105
    ROLE_CHANGED = "auth.role_changed"
    USER_DISABLED = "auth.user_disabled"
    USER_ENABLED = "auth.user_enabled"
    SIGNING_KEY_ROTATED = "auth.signing_key_rotated"
    CSRF_REJECTED = "auth.csrf_rejected"
    INVITATION_CREATED = "auth.invitation_created"

    # Rate limiting and abuse control (bastion.ratelimit)
    CLIENT_BLOCKED = "ratelimit.client_blocked"
    CLIENT_UNBLOCKED = "ratelimit.client_unblocked"
    # Chat (ids only, never content)
    CHAT_SESSION_CREATED = "chat.session_created"
    CHAT_SESSION_DELETED = "chat.session_deleted"
    # Journals (ids only, never content)
    JOURNAL_ENTRY_CREATED = "journal.entry_created"
    JOURNAL_ENTRY_UPDATED = "journal.entry_updated"
    JOURNAL_ENTRY_DELETED = "journal.entry_deleted"
    # Content guard verdicts other than allow (ids, categories and scores; never the text)
    GUARD_INPUT_FLAGGED = "guard.input_flagged"
    GUARD_INPUT_BLOCKED = "guard.input_blocked"
    GUARD_OUTPUT_FLAGGED = "guard.output_flagged"
    GUARD_OUTPUT_WITHHELD = "guard.output_withheld"

    # API keys and service identities (bastion.auth.api_key_service, bastion.web.mtls)
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    API_KEY_ROTATED = "api_key.rotated"
    API_KEY_REJECTED = "api_key.rejected"
    SERVICE_IDENTITY_REJECTED = "auth.service_identity_rejected"

    # The user's rights (bastion.privacy): ids only, never what was exported or erased
    ACCOUNT_EXPORTED = "privacy.account_exported"
    ACCOUNT_ERASED = "privacy.account_erased"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class RecordKind(StrEnum):
    """Which retention period an audit record falls under (docs/privacy.md).

    Access records (RETENTION_DAYS_ACCESS, 90 days) say what someone used: routine token
    refreshes, chat sessions and journal entries created or deleted. Security records
    (RETENTION_DAYS_SECURITY, 365 days) are what an investigation needs a year later: sign-ins and
    their failures, sessions ended, password, role, key and secret changes, blocks, guard verdicts,
    exports and erasures of accounts.
    """

    ACCESS = "access"
    SECURITY = "security"


# Written out member by member so that a new event is a decision, not a default (a unit test
# checks every member is here). Stored events no longer in the vocabulary count as security
# records: the longer retention is the safe side.
RECORD_KINDS: dict[AuditEvent, RecordKind] = {
    AuditEvent.SERVICE_STARTED: RecordKind.SECURITY,
    AuditEvent.CONFIG_CHANGED: RecordKind.SECURITY,
    AuditEvent.SECRETS_GENERATED: RecordKind.SECURITY,
    AuditEvent.SECRET_ROTATED: RecordKind.SECURITY,
    AuditEvent.CONTENT_SIGNING_KEY_ROTATED: RecordKind.SECURITY,
    AuditEvent.USER_REGISTERED: RecordKind.SECURITY,
    AuditEvent.LOGIN_SUCCEEDED: RecordKind.SECURITY,
    AuditEvent.LOGIN_FAILED: RecordKind.SECURITY,
    AuditEvent.ACCOUNT_LOCKED: RecordKind.SECURITY,
    AuditEvent.ACCOUNT_UNLOCKED: RecordKind.SECURITY,
    AuditEvent.TOKEN_REFRESHED: RecordKind.ACCESS,
    AuditEvent.TOKEN_REJECTED: RecordKind.SECURITY,
    AuditEvent.REFRESH_REUSE_DETECTED: RecordKind.SECURITY,
    AuditEvent.LOGOUT: RecordKind.SECURITY,
    AuditEvent.LOGOUT_ALL: RecordKind.SECURITY,
    AuditEvent.SESSIONS_ENDED_ALL: RecordKind.SECURITY,
    AuditEvent.PASSWORD_CHANGED: RecordKind.SECURITY,
    AuditEvent.PASSWORD_RESET_REQUESTED: RecordKind.SECURITY,
    AuditEvent.PASSWORD_RESET_COMPLETED: RecordKind.SECURITY,
    AuditEvent.ROLE_CHANGED: RecordKind.SECURITY,
    AuditEvent.USER_DISABLED: RecordKind.SECURITY,
    AuditEvent.USER_ENABLED: RecordKind.SECURITY,
    AuditEvent.SIGNING_KEY_ROTATED: RecordKind.SECURITY,
    AuditEvent.CSRF_REJECTED: RecordKind.SECURITY,
    AuditEvent.INVITATION_CREATED: RecordKind.SECURITY,
    AuditEvent.CLIENT_BLOCKED: RecordKind.SECURITY,
    AuditEvent.CLIENT_UNBLOCKED: RecordKind.SECURITY,
    AuditEvent.CHAT_SESSION_CREATED: RecordKind.ACCESS,
    AuditEvent.CHAT_SESSION_DELETED: RecordKind.ACCESS,
    AuditEvent.JOURNAL_ENTRY_CREATED: RecordKind.ACCESS,
    AuditEvent.JOURNAL_ENTRY_UPDATED: RecordKind.ACCESS,
    AuditEvent.JOURNAL_ENTRY_DELETED: RecordKind.ACCESS,
    AuditEvent.GUARD_INPUT_FLAGGED: RecordKind.SECURITY,
    AuditEvent.GUARD_INPUT_BLOCKED: RecordKind.SECURITY,
    AuditEvent.GUARD_OUTPUT_FLAGGED: RecordKind.SECURITY,
    AuditEvent.GUARD_OUTPUT_WITHHELD: RecordKind.SECURITY,
    AuditEvent.API_KEY_CREATED: RecordKind.SECURITY,
    AuditEvent.API_KEY_REVOKED: RecordKind.SECURITY,
    AuditEvent.API_KEY_ROTATED: RecordKind.SECURITY,
    AuditEvent.API_KEY_REJECTED: RecordKind.SECURITY,
    AuditEvent.SERVICE_IDENTITY_REJECTED: RecordKind.SECURITY,
    # An export hands over everything the account holds: kept as long as a sign-in.
    AuditEvent.ACCOUNT_EXPORTED: RecordKind.SECURITY,
    AuditEvent.ACCOUNT_ERASED: RecordKind.SECURITY,
}


def events_of(kind: RecordKind) -> frozenset[str]:
    """The stored event names of one kind of record."""
    return frozenset(event.value for event, of in RECORD_KINDS.items() if of is kind)
