# SPDX-License-Identifier: Apache-2.0
"""The audit event vocabulary. New features add members here, never free-form strings."""

from __future__ import annotations

from enum import StrEnum


class AuditEvent(StrEnum):
    SERVICE_STARTED = "service.started"
    CONFIG_CHANGED = "config.changed"
    SECRETS_GENERATED = "secrets.generated"
    SECRET_ROTATED = "secrets.rotated"  # noqa: S105 - an event name; details name the secret, never its value
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


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
