# SPDX-License-Identifier: Apache-2.0
"""The alert kinds, their severities, and each counting detector's threshold and window.

A counting rule fires when its count within one window goes *above* the threshold ("more than
10 in 5 minutes"): the event that makes it threshold + 1 fires it, once per subject and window.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bastion.settings import Settings


class AlertKind(StrEnum):
    AUTH_FAILURES_IP = "auth_failures_ip"
    AUTH_FAILURES_ACCOUNT = "auth_failures_account"
    RATE_LIMIT_IP = "rate_limit_ip"
    SERVER_ERRORS = "server_errors"
    KEY_REFUSALS = "key_refusals"
    PROMPT_EXTRACTION = "prompt_extraction"
    SESSION_SPIKE = "session_spike"
    TOKEN_USAGE = "token_usage"  # noqa: S105 - an alert kind, not a secret
    ADMIN_NEW_NETWORK = "admin_new_network"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITIES: dict[AlertKind, Severity] = {
    AlertKind.AUTH_FAILURES_IP: Severity.WARNING,
    AlertKind.AUTH_FAILURES_ACCOUNT: Severity.WARNING,
    AlertKind.RATE_LIMIT_IP: Severity.WARNING,
    # Users are seeing failures right now.
    AlertKind.SERVER_ERRORS: Severity.CRITICAL,
    AlertKind.KEY_REFUSALS: Severity.WARNING,
    AlertKind.PROMPT_EXTRACTION: Severity.WARNING,
    AlertKind.SESSION_SPIKE: Severity.WARNING,
    AlertKind.TOKEN_USAGE: Severity.WARNING,
    # Possibly a stolen administrator password in use.
    AlertKind.ADMIN_NEW_NETWORK: Severity.CRITICAL,
}


@dataclass(frozen=True, slots=True)
class Rule:
    """More than ``threshold`` events within ``window`` seconds; a threshold of 0 is off."""

    threshold: int
    window: int

    @property
    def enabled(self) -> bool:
        return self.threshold > 0


@dataclass(frozen=True, slots=True)
class TokenRule:
    """A key's tokens this hour above ``factor`` x its baseline, once at least ``min_tokens``."""

    factor: float
    min_tokens: int
    weight: float  # of the latest active hour in the baseline (an exponentially weighted mean)

    @property
    def enabled(self) -> bool:
        return self.factor > 0


@dataclass(frozen=True, slots=True)
class Rules:
    auth_failures: Rule
    rate_limit: Rule
    server_errors: Rule
    key_refusals: Rule
    prompt_extraction: Rule
    session_creations: Rule
    tokens: TokenRule
    admin_new_network: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        s = settings
        return cls(
            auth_failures=Rule(s.alert_auth_failures, s.alert_auth_failure_window_seconds),
            rate_limit=Rule(s.alert_rate_limit_violations, s.alert_rate_limit_window_seconds),
            server_errors=Rule(s.alert_server_errors, s.alert_server_error_window_seconds),
            key_refusals=Rule(s.alert_key_refusals, s.alert_key_refusal_window_seconds),
            prompt_extraction=Rule(s.alert_prompt_extraction, s.alert_prompt_extraction_window_seconds),
            session_creations=Rule(s.alert_session_creations, s.alert_session_creation_window_seconds),
            tokens=TokenRule(
                s.alert_token_usage_factor, s.alert_token_usage_min_tokens, s.alert_token_baseline_weight
            ),
            admin_new_network=s.alert_admin_new_network,
        )
