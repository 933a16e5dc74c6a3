# SPDX-License-Identifier: Apache-2.0
"""What the detectors are fed: one ``Signal`` per audit record, and what each event name means.

Each audit event name the detectors care about maps to one ``SignalKind`` here, in one table, so
the detectors never look at event names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bastion.guard.base import Category


@dataclass(frozen=True, slots=True)
class Signal:
    """One audit record as the detectors see it: who, from where, and how it ended.

    ``user_id`` is the account concerned (for a failed sign-in, the account it targeted, when
    known); ``categories`` are the content guard's categories of a guard verdict.
    """

    event_type: str
    result: str  # "success" or "failure"
    ip: str | None
    user_id: str | None
    api_key_id: str | None
    role: str | None
    categories: tuple[str, ...]
    at: datetime


class SignalKind(StrEnum):
    AUTH_FAILURE = "auth_failure"
    AUTH_SUCCESS = "auth_success"
    RATE_LIMITED = "rate_limited"
    GUARD_VERDICT = "guard_verdict"
    SESSION_CREATED = "session_created"


# The audit events the detectors watch. A name missing here is not looked at.
EVENT_KINDS: dict[str, SignalKind] = {
    # every refused credential: a password, a token, an API key, a client certificate
    "auth_failure": SignalKind.AUTH_FAILURE,
    # successful sign-in (with the account's role)
    "auth_success": SignalKind.AUTH_SUCCESS,
    # a 429; counted from the request path instead (``AnomalyDetector.observe_request``)
    "rate_limit_exceeded": SignalKind.RATE_LIMITED,
    # content guard verdicts, with their categories
    "guard_input_flagged": SignalKind.GUARD_VERDICT,
    "guard_input_blocked": SignalKind.GUARD_VERDICT,
    "guard_output_flagged": SignalKind.GUARD_VERDICT,
    "guard_output_withheld": SignalKind.GUARD_VERDICT,
    # chat sessions
    "chat_session_created": SignalKind.SESSION_CREATED,
}

# Someone trying to read the system prompt: asked for in the input, or recited in a reply.
EXTRACTION_CATEGORIES = frozenset(
    {Category.prompt_extraction, Category.canary_leak, Category.system_prompt_leak}
)


def kind_of(signal: Signal) -> SignalKind | None:
    """What ``signal`` means to the detectors; None for events they do not watch."""
    return EVENT_KINDS.get(signal.event_type)


def is_extraction(signal: Signal) -> bool:
    return any(category in EXTRACTION_CATEGORIES for category in signal.categories)
