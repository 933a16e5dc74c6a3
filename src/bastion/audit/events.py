# SPDX-License-Identifier: Apache-2.0
"""The audit event vocabulary. New features add members here, never free-form strings.

Stored in ``audit_logs.event_type``: flat snake_case names that operators type in SQL
(``WHERE event_type = 'auth_failure'``). Every refused credential is one ``auth_failure`` whatever
it was (a password, a token, an API key, a client certificate); ``details.method`` says which.
"""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    SERVICE_STARTED = "service_started"
    CONFIG_CHANGED = "config_changed"
    SECRETS_GENERATED = "secrets_generated"
    SECRET_ROTATED = "secret_rotated"  # noqa: S105 - an event name; details name the secret, never its value
    DATABASE_REKEYED = "database_rekeyed"
    # `bastion db backup|restore`: the archive's key id, size and checksum, never its path or content
    DATABASE_BACKED_UP = "database_backed_up"
    DATABASE_RESTORED = "database_restored"
    CONTENT_SIGNING_KEY_ROTATED = "content_signing_key_rotated"
    # identity
    USER_REGISTERED = "user_registered"
    AUTH_SUCCESS = "auth_success"
    AUTH_FAILURE = "auth_failure"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_UNLOCKED = "account_unlocked"
    TOKEN_REFRESHED = "token_refreshed"  # noqa: S105
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
    LOGOUT = "logout"
    LOGOUT_ALL = "logout_all"
    SESSIONS_ENDED_ALL = "sessions_ended_all"  # every user's sessions (emergency rotation)
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105
    PASSWORD_RESET_COMPLETED = "password_reset"  # noqa: S105
    ROLE_CHANGED = "role_changed"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    SIGNING_KEY_ROTATED = "signing_key_rotated"
    CSRF_REJECTED = "csrf_rejected"
    INVITATION_CREATED = "invitation_created"
    # An administrator read someone else's account (ids only)
    ADMIN_USER_READ = "admin_user_read"
    # The admin API's other reads and actions (ids and counts, never content or values)
    ADMIN_SESSIONS_READ = "admin_sessions_read"
    ADMIN_SESSION_ENDED = "admin_session_ended"
    RATE_LIMIT_STATE_READ = "rate_limit_state_read"
    RATE_LIMIT_RESET = "rate_limit_reset"
    SECRETS_STATUS_READ = "secrets_status_read"
    AUDIT_QUERIED = "audit_queried"  # the audit log searched (the filters, never the records)
    BLOCKLIST_READ = "blocklist_read"
    ALERTS_READ = "alerts_read"
    ADMIN_KEYS_READ = "admin_keys_read"  # every account's API keys listed

    # Rate limiting and abuse control (bastion.ratelimit)
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    CLIENT_BLOCKED = "client_blocked"
    CLIENT_UNBLOCKED = "client_unblocked"
    # Chat (ids only, never content)
    CHAT_SESSION_CREATED = "chat_session_created"
    CHAT_SESSION_DELETED = "chat_session_deleted"
    # Journals (ids only, never content)
    JOURNAL_ENTRY_CREATED = "journal_entry_created"
    JOURNAL_ENTRY_UPDATED = "journal_entry_updated"
    JOURNAL_ENTRY_DELETED = "journal_entry_deleted"
    # Content guard verdicts other than allow (ids, categories and scores; never the text)
    GUARD_INPUT_FLAGGED = "guard_input_flagged"
    GUARD_INPUT_BLOCKED = "guard_input_blocked"
    GUARD_OUTPUT_FLAGGED = "guard_output_flagged"
    GUARD_OUTPUT_WITHHELD = "guard_output_withheld"

    # API keys (bastion.auth.api_key_service)
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    API_KEY_ROTATED = "api_key_rotated"

    # The user's rights (bastion.privacy): ids only, never what was exported or erased
    ACCOUNT_EXPORTED = "account_exported"
    ACCOUNT_ERASED = "account_erased"

    # Anomaly detection (bastion.alerts): the alert's id, kind and subject, never what caused it
    ALERT_RAISED = "alert_raised"
    ALERT_ACKNOWLEDGED = "alert_acknowledged"

    # The audit log itself: retention cut the oldest records of a chain (the new anchor in details)
    AUDIT_PURGED = "audit_purged"
    AUDIT_EXPORTED = "audit_exported"


class Result(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class RecordKind(StrEnum):
    """Which retention period an audit record falls under, and so which chain it is in.

    Access records (RETENTION_DAYS_ACCESS, 90 days) say what someone used: routine token
    refreshes, chat sessions and journal entries created or deleted. Security records
    (RETENTION_DAYS_SECURITY, 365 days) are what an investigation needs a year later: sign-ins and
    their failures, sessions ended, password, role, key and secret changes, blocks, guard verdicts,
    exports and erasures of accounts. Each kind is its own hash chain, so retention always cuts a
    chain at its oldest end and what remains still verifies (docs/audit.md).
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
    AuditEvent.DATABASE_REKEYED: RecordKind.SECURITY,
    AuditEvent.DATABASE_BACKED_UP: RecordKind.SECURITY,
    AuditEvent.DATABASE_RESTORED: RecordKind.SECURITY,
    AuditEvent.CONTENT_SIGNING_KEY_ROTATED: RecordKind.SECURITY,
    AuditEvent.USER_REGISTERED: RecordKind.SECURITY,
    AuditEvent.AUTH_SUCCESS: RecordKind.SECURITY,
    AuditEvent.AUTH_FAILURE: RecordKind.SECURITY,
    AuditEvent.ACCOUNT_LOCKED: RecordKind.SECURITY,
    AuditEvent.ACCOUNT_UNLOCKED: RecordKind.SECURITY,
    AuditEvent.TOKEN_REFRESHED: RecordKind.ACCESS,
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
    AuditEvent.ADMIN_USER_READ: RecordKind.SECURITY,
    AuditEvent.ADMIN_SESSIONS_READ: RecordKind.SECURITY,
    AuditEvent.ADMIN_SESSION_ENDED: RecordKind.SECURITY,
    AuditEvent.RATE_LIMIT_STATE_READ: RecordKind.SECURITY,
    AuditEvent.RATE_LIMIT_RESET: RecordKind.SECURITY,
    AuditEvent.SECRETS_STATUS_READ: RecordKind.SECURITY,
    AuditEvent.AUDIT_QUERIED: RecordKind.SECURITY,
    AuditEvent.BLOCKLIST_READ: RecordKind.SECURITY,
    AuditEvent.ALERTS_READ: RecordKind.SECURITY,
    AuditEvent.ADMIN_KEYS_READ: RecordKind.SECURITY,
    AuditEvent.RATE_LIMIT_EXCEEDED: RecordKind.SECURITY,
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
    # An export hands over everything the account holds: kept as long as a sign-in.
    AuditEvent.ACCOUNT_EXPORTED: RecordKind.SECURITY,
    AuditEvent.ACCOUNT_ERASED: RecordKind.SECURITY,
    AuditEvent.ALERT_RAISED: RecordKind.SECURITY,
    AuditEvent.ALERT_ACKNOWLEDGED: RecordKind.SECURITY,
    AuditEvent.AUDIT_PURGED: RecordKind.SECURITY,
    AuditEvent.AUDIT_EXPORTED: RecordKind.SECURITY,
}


def kind_of(event_type: str) -> RecordKind:
    """The kind (and chain) of a stored event name; unknown names are security records."""
    try:
        return RECORD_KINDS[AuditEvent(event_type)]
    except ValueError:
        return RecordKind.SECURITY


def events_of(kind: RecordKind) -> frozenset[str]:
    """The stored event names of one kind of record."""
    return frozenset(event.value for event, of in RECORD_KINDS.items() if of is kind)


# The names of the first audit table (``audit_events``), as migration 0011 renames them. The
# refused credentials became one ``auth_failure``; the method they named goes into the details.
LEGACY_NAMES: dict[str, tuple[AuditEvent, str | None]] = {
    "service.started": (AuditEvent.SERVICE_STARTED, None),
    "config.changed": (AuditEvent.CONFIG_CHANGED, None),
    "secrets.generated": (AuditEvent.SECRETS_GENERATED, None),
    "secrets.rotated": (AuditEvent.SECRET_ROTATED, None),
    "auth.register": (AuditEvent.USER_REGISTERED, None),
    "auth.login": (AuditEvent.AUTH_SUCCESS, None),
    "auth.login_failed": (AuditEvent.AUTH_FAILURE, "password"),
    "auth.token_rejected": (AuditEvent.AUTH_FAILURE, "token"),
    "api_key.rejected": (AuditEvent.AUTH_FAILURE, "api_key"),
    "auth.service_identity_rejected": (AuditEvent.AUTH_FAILURE, "client_certificate"),
    "auth.lockout": (AuditEvent.ACCOUNT_LOCKED, None),
    "auth.unlock": (AuditEvent.ACCOUNT_UNLOCKED, None),
    "auth.refresh": (AuditEvent.TOKEN_REFRESHED, None),
    "auth.refresh_reuse_detected": (AuditEvent.REFRESH_REUSE_DETECTED, None),
    "auth.logout": (AuditEvent.LOGOUT, None),
    "auth.logout_all": (AuditEvent.LOGOUT_ALL, None),
    "auth.sessions_ended_all": (AuditEvent.SESSIONS_ENDED_ALL, None),
    "auth.password_changed": (AuditEvent.PASSWORD_CHANGED, None),
    "auth.password_reset_requested": (AuditEvent.PASSWORD_RESET_REQUESTED, None),
    "auth.password_reset": (AuditEvent.PASSWORD_RESET_COMPLETED, None),
    "auth.role_changed": (AuditEvent.ROLE_CHANGED, None),
    "auth.user_disabled": (AuditEvent.USER_DISABLED, None),
    "auth.user_enabled": (AuditEvent.USER_ENABLED, None),
    "auth.signing_key_rotated": (AuditEvent.SIGNING_KEY_ROTATED, None),
    "auth.csrf_rejected": (AuditEvent.CSRF_REJECTED, None),
    "auth.invitation_created": (AuditEvent.INVITATION_CREATED, None),
    "ratelimit.client_blocked": (AuditEvent.CLIENT_BLOCKED, None),
    "ratelimit.client_unblocked": (AuditEvent.CLIENT_UNBLOCKED, None),
    "chat.session_created": (AuditEvent.CHAT_SESSION_CREATED, None),
    "chat.session_deleted": (AuditEvent.CHAT_SESSION_DELETED, None),
    "journal.entry_created": (AuditEvent.JOURNAL_ENTRY_CREATED, None),
    "journal.entry_updated": (AuditEvent.JOURNAL_ENTRY_UPDATED, None),
    "journal.entry_deleted": (AuditEvent.JOURNAL_ENTRY_DELETED, None),
    "guard.input_flagged": (AuditEvent.GUARD_INPUT_FLAGGED, None),
    "guard.input_blocked": (AuditEvent.GUARD_INPUT_BLOCKED, None),
    "guard.output_flagged": (AuditEvent.GUARD_OUTPUT_FLAGGED, None),
    "guard.output_withheld": (AuditEvent.GUARD_OUTPUT_WITHHELD, None),
    "api_key.created": (AuditEvent.API_KEY_CREATED, None),
    "api_key.revoked": (AuditEvent.API_KEY_REVOKED, None),
    "api_key.rotated": (AuditEvent.API_KEY_ROTATED, None),
    "privacy.account_exported": (AuditEvent.ACCOUNT_EXPORTED, None),
    "privacy.account_erased": (AuditEvent.ACCOUNT_ERASED, None),
}
